"""The database executor: grouped writes, savepoint isolation, cancelled callers."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.db.executor import Database, Tx
from sessiond.errors import NotFound


def _count_workspaces(tx: Tx) -> int:
    return int(tx.conn.execute(sa.select(sa.func.count()).select_from(t.workspaces)).scalar_one())


def _sqlite_only(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the single queued writer (and its grouping) exists on SQLite only")


def test_cancelled_caller_does_not_kill_the_writer(client: TestClient, tenant: Any) -> None:
    db: Database = client.app.state.ctx.db  # type: ignore[attr-defined]
    _sqlite_only(db)
    gate = threading.Event()

    def blocker(tx: Tx) -> None:
        gate.wait(5)

    first = db.submit_write(blocker)
    victim = db.submit_write(lambda tx: 1)
    assert victim.cancel()  # the caller gives up while the job is still queued
    gate.set()
    first.result(timeout=5)
    # The writer thread survived and still serves writes.
    assert db.submit_write(lambda tx: 42).result(timeout=5) == 42
    assert victim.cancelled()


def test_failing_job_in_a_group_rolls_back_alone(client: TestClient, tenant: Any) -> None:
    db: Database = client.app.state.ctx.db  # type: ignore[attr-defined]
    _sqlite_only(db)
    before = db.read_sync(_count_workspaces)
    gate = threading.Event()

    def insert(tx: Tx, name: str) -> str:
        tx.conn.execute(
            t.workspaces.insert().values(
                account_id=tenant.account_id, id=name, name=name, created_at=1, updated_at=1
            )
        )
        return name

    def insert_then_fail(tx: Tx) -> None:
        insert(tx, "doomed")
        raise NotFound("boom")

    first = db.submit_write(lambda tx: gate.wait(5))
    jobs = [
        db.submit_write(lambda tx: insert(tx, "ok-1")),
        db.submit_write(insert_then_fail),
        db.submit_write(lambda tx: insert(tx, "ok-2")),
    ]
    gate.set()
    first.result(timeout=5)
    assert jobs[0].result(timeout=5) == "ok-1" and jobs[2].result(timeout=5) == "ok-2"
    try:
        jobs[1].result(timeout=5)
        raise AssertionError("the failing job succeeded")
    except NotFound:
        pass
    assert db.read_sync(_count_workspaces) == before + 2
    assert isinstance(jobs[0], cf.Future)


def test_every_transaction_takes_its_now_from_the_clock(database_url: str) -> None:
    """Reads, single writes and grouped writes (SQLite), pooled writes (PostgreSQL): all
    see the injected clock, read once per transaction."""
    ticks = iter(range(1_000, 1_000_000, 1_000))
    db = Database(database_url, readers=1, pg_workers=2, clock=lambda: next(ticks))
    db.start()
    try:
        first = db.read_sync(lambda tx: tx.now)
        assert db.read_sync(lambda tx: (tx.now, tx.now)) == (first + 1_000, first + 1_000)
        assert db.write_sync(lambda tx: tx.now) == first + 2_000
        gate = threading.Event()
        held = db.submit_write(lambda tx: (gate.wait(5), tx.now)[1])
        grouped = [db.submit_write(lambda tx: tx.now) for _ in range(3)]
        gate.set()
        nows = [held.result(5), *(f.result(5) for f in grouped)]
        assert len(set(nows)) == 4 and all(first < now < 1_000_000 for now in nows)
    finally:
        db.close()
