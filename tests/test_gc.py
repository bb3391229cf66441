"""Garbage collection: unreachable objects go, everything a working tree, base,
checkpoint or commit refers to stays, and collection never overlaps a writer."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sessiond.cli import app
from sessiond.db import tables as t
from sessiond.files import gc
from sessiond.files.objects import GC_LOCK_KEY
from tests.support.api import Api


def put(api: Api, sid: str, path: str, data: bytes) -> None:
    api.put(f"/v1/sessions/{sid}/files/{path}", content=data, expect=200)


def shas(client: TestClient) -> set[str]:
    def read(tx: Any) -> set[str]:
        return set(tx.conn.execute(sa.select(t.git_objects.c.sha)).scalars())

    return client.app.state.ctx.db.read_sync(read)  # type: ignore[attr-defined,no-any-return]


def collect(client: TestClient) -> gc.Result:
    return gc.collect_all(client.app.state.ctx.db, batch=2)  # type: ignore[attr-defined]


def test_each_account_is_collected_in_its_own_transaction(
    client: TestClient, api: Api, other: Any
) -> None:
    """The exclusive lock (and SQLite's one writer) is held one account at a time."""
    mine = api.session()["id"]
    put(api, mine, "a.txt", b"1")
    put(api, mine, "a.txt", b"2")  # the first blob is now garbage
    theirs = Api(client, other.write).session()["id"]
    put(Api(client, other.write), theirs, "b.txt", b"1")
    put(Api(client, other.write), theirs, "b.txt", b"2")
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    sweeping: list[Any] = []  # the transactions that deleted objects

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM GIT_OBJECTS"):
            transaction = conn.get_transaction()
            if all(transaction is not other for other in sweeping):
                sweeping.append(transaction)

    sa.event.listen(db.write_engine, "after_cursor_execute", seen)
    try:
        result = collect(client)
    finally:
        sa.event.remove(db.write_engine, "after_cursor_execute", seen)
    assert result.accounts == 2 and result.deleted >= 2
    assert len(sweeping) == 2, sweeping


def test_collects_only_the_unreachable(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    put(api, sid, "keep/a.txt", b"v1\n")
    cp = api.post(f"/v1/sessions/{sid}/checkpoints", expect=201).json()["checkpoint"]["id"]
    put(api, sid, "keep/a.txt", b"v2\n")
    commit = api.post(f"/v1/sessions/{sid}/commit", {"message": "c"}, expect=201).json()
    put(api, sid, "keep/a.txt", b"v3 (transient)\n")
    put(api, sid, "keep/a.txt", b"v4\n")  # v3 and its trees are now unreachable
    before = shas(client)
    result = collect(client)
    after = shas(client)
    assert result.deleted == len(before - after) > 0
    assert after < before
    # every version still referenced reads back
    assert api.get(f"/v1/sessions/{sid}/files/keep/a.txt").content == b"v4\n"
    listing = api.get(f"/v1/sessions/{sid}/files", params={"at": cp, "recursive": "true"})
    assert [e["path"] for e in listing.json()["entries"]] == ["keep/a.txt"]
    d = api.get(f"/v1/sessions/{sid}/diff", params={"from": cp, "to": commit["commit"]["id"]})
    assert "+v2" in d.json()["files"][0]["patch"]
    api.post(f"/v1/sessions/{sid}/restore", {"checkpointId": cp}, expect=200)
    assert api.get(f"/v1/sessions/{sid}/files/keep/a.txt").content == b"v1\n"
    assert collect(client).deleted == 0  # nothing more to collect
    api.get(f"/v1/sessions/{sid}/snapshot", expect=200)


def test_deleted_sessions_free_what_no_one_else_holds(client: TestClient, api: Api) -> None:
    parent = api.session()["id"]
    put(api, parent, "shared.txt", b"shared\n")
    child = api.post(f"/v1/sessions/{parent}/fork", expect=201).json()["session"]["id"]
    put(api, parent, "mine.txt", b"parent only\n")
    collect(client)
    api.delete(f"/v1/sessions/{parent}", expect=204)
    result = collect(client)
    assert result.deleted > 0
    assert api.get(f"/v1/sessions/{child}/files/shared.txt").content == b"shared\n"
    api.delete(f"/v1/sessions/{child}", expect=204)
    collect(client)
    assert shas(client) == set()


def test_gc_waits_for_writers_on_postgresql(client: TestClient, api: Api, backend: str) -> None:
    """A transaction that uses the object store holds a shared lock; collection takes it
    exclusively, so it waits until that transaction is over."""
    if backend != "postgresql":
        pytest.skip("SQLite: one writer thread runs writes and collection one at a time")
    put(api, api.session()["id"], "a.txt", b"something to collect")
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    started = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with db.write_engine.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": GC_LOCK_KEY})
            started.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(5)
    done = threading.Event()
    runner = threading.Thread(target=lambda: (collect(client), done.set()))
    runner.start()
    time.sleep(0.5)
    assert not done.is_set(), "collection ran while a writer held the object-store lock"
    release.set()
    thread.join(10)
    runner.join(10)
    assert done.is_set()


def test_cli(tmp_path: Any, database_url: str, client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    put(api, sid, "a.txt", b"1")
    put(api, sid, "a.txt", b"2")
    result = CliRunner().invoke(
        app, ["gc", "--database-url", database_url, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "2 deleted" in result.stdout  # the old blob and the old root tree
