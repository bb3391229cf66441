"""TTL expiry: read-time (before any sweep) and the background sweep updating rows."""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.sessions import service as sessions
from tests.support.api import Api


def _row_status(client: TestClient, sid: str) -> str:
    def read(tx: Tx) -> str:
        q = sa.select(t.sessions.c.status).where(t.sessions.c.id == sid)
        return str(tx.conn.execute(q).scalar_one())

    return client.app.state.ctx.db.read_sync(read)  # type: ignore[attr-defined,no-any-return]


def _force_expiry(client: TestClient, sid: str) -> None:
    """Move expiresAt into the past directly (the clock cannot be waited on for long)."""

    def write(tx: Tx) -> None:
        tx.conn.execute(
            t.sessions.update().where(t.sessions.c.id == sid).values(expires_at=tx.now - 1)
        )

    client.app.state.ctx.db.write_sync(write)  # type: ignore[attr-defined]


def test_reads_expired_before_sweep(client: TestClient, api: Api) -> None:
    # Stop the sweeper from racing this test: the row must still say active.
    s = api.session(ttl_seconds=3600)
    assert s["status"] == "active" and s["expiresAt"] is not None
    _force_expiry(client, s["id"])
    got = api.get(f"/v1/sessions/{s['id']}", expect=200)
    session = got.json()["session"]
    assert session["status"] == "expired"
    assert session["lifecycleVersion"] == s["lifecycleVersion"] + 1
    assert got.headers["etag"] == f'"{s["lifecycleVersion"] + 1}"'
    listed = api.get("/v1/sessions?status=expired").json()["sessions"]
    assert [x["id"] for x in listed] == [s["id"]]
    assert api.get("/v1/sessions?status=active").json()["sessions"] == []
    api.put(
        f"/v1/sessions/{s['id']}/context",
        {"context": {}},
        expect=409,
        code="session_not_active",
    )


def test_sweep_updates_rows_and_emits_event(client: TestClient, api: Api) -> None:
    s = api.session(ttl_seconds=1)
    deadline = time.monotonic() + 6
    while _row_status(client, s["id"]) != "expired":
        assert time.monotonic() < deadline, "sweep never expired the row"
        time.sleep(0.1)
    session = api.get(f"/v1/sessions/{s['id']}").json()["session"]
    assert session["status"] == "expired"
    assert session["lifecycleVersion"] == 2  # same as the read-time value: ETags stay stable
    events = api.get(f"/v1/sessions/{s['id']}/events").json()["events"]
    status_events = [e for e in events if e["type"] == "session.status"]
    assert [e["data"] for e in status_events] == [
        {"from": "active", "to": "expired", "reason": "ttl"}
    ]


def test_sweep_function_counts(client: TestClient, api: Api) -> None:
    a = api.session(ttl_seconds=3600)
    b = api.session(ttl_seconds=3600)
    c = api.session()
    _force_expiry(client, a["id"])
    _force_expiry(client, b["id"])
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    n = db.write_sync(sessions.sweep_expired)
    assert n in (0, 1, 2)  # the background sweeper may have taken some already
    assert db.write_sync(sessions.sweep_expired) == 0
    assert _row_status(client, a["id"]) == "expired"
    assert _row_status(client, b["id"]) == "expired"
    assert _row_status(client, c["id"]) == "active"


def test_ephemeral_sessions_are_deleted_on_expiry(client: TestClient, api: Api) -> None:
    s = api.session(ttl_seconds=3600, ephemeral=True)
    _force_expiry(client, s["id"])
    client.app.state.ctx.db.write_sync(sessions.sweep_expired)  # type: ignore[attr-defined]
    api.get(f"/v1/sessions/{s['id']}", expect=404, code="not_found")


def test_ttl_patch_sets_and_clears_expiry(api: Api) -> None:
    s = api.session()
    assert s["expiresAt"] is None
    out = api.patch(f"/v1/sessions/{s['id']}", {"ttlSeconds": 60}, expect=200).json()["session"]
    assert out["ttlSeconds"] == 60 and out["expiresAt"] is not None
    out = api.patch(f"/v1/sessions/{s['id']}", {"ttlSeconds": None}, expect=200).json()["session"]
    assert out["ttlSeconds"] is None and out["expiresAt"] is None
    api.patch(f"/v1/sessions/{s['id']}", {"ttlSeconds": 0}, expect=422, code="validation_error")
