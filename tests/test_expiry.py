"""TTL expiry: read-time (before any sweep) and the background sweep updating rows.

Time moves by ``clock.advance`` (the app's transactions read the test's clock), never by
sleeping; only the background sweep, a real concurrent task, is waited on.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.sessions import service as sessions
from sessiond.settings import Settings
from tests.support.api import Api
from tests.support.clock import Clock


def _row_status(client: TestClient, sid: str) -> str:
    def read(tx: Tx) -> str:
        q = sa.select(t.sessions.c.status).where(t.sessions.c.id == sid)
        return str(tx.conn.execute(q).scalar_one())

    return client.app.state.ctx.db.read_sync(read)  # type: ignore[attr-defined,no-any-return]


def _status(api: Api, sid: str) -> str:
    return str(api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]["status"])


def test_reads_expired_before_sweep(client: TestClient, api: Api, clock: Clock) -> None:
    s = api.session(ttl_seconds=3600)
    assert s["status"] == "active" and s["expiresAt"] is not None
    clock.advance(3500)
    assert _status(api, s["id"]) == "active"  # not before its time
    clock.advance(100)
    got = api.get(f"/v1/sessions/{s['id']}", expect=200)
    session = got.json()["session"]
    assert session["status"] == "expired"
    assert _row_status(client, s["id"]) == "active"  # read-time: no sweep has run
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


@pytest.mark.sweeper
def test_sweep_updates_rows_and_emits_event(client: TestClient, api: Api, clock: Clock) -> None:
    s = api.session(ttl_seconds=60)
    kept = api.session(ttl_seconds=3600)
    clock.advance(60)
    deadline = time.monotonic() + 5  # the sweep runs every 0.05 s in tests
    while _row_status(client, s["id"]) != "expired":
        assert time.monotonic() < deadline, "sweep never expired the row"
        time.sleep(0.02)
    assert _row_status(client, kept["id"]) == "active"
    session = api.get(f"/v1/sessions/{s['id']}").json()["session"]
    assert session["status"] == "expired"
    assert session["lifecycleVersion"] == 2  # same as the read-time value: ETags stay stable
    events = api.get(f"/v1/sessions/{s['id']}/events").json()["events"]
    status_events = [e for e in events if e["type"] == "session.status"]
    assert [e["data"] for e in status_events] == [
        {"from": "active", "to": "expired", "reason": "ttl"}
    ]


def test_sweep_function_counts(client: TestClient, api: Api, clock: Clock) -> None:
    a = api.session(ttl_seconds=3600)
    b = api.session(ttl_seconds=3600)
    later = api.session(ttl_seconds=7200)
    c = api.session()
    clock.advance(3600)
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    assert db.write_sync(sessions.sweep_expired, limit=500) == 2  # no background sweep in tests
    assert db.write_sync(sessions.sweep_expired, limit=500) == 0
    assert _row_status(client, a["id"]) == "expired"
    assert _row_status(client, b["id"]) == "expired"
    assert _row_status(client, later["id"]) == "active"
    assert _row_status(client, c["id"]) == "active"
    clock.advance(3600)
    assert db.write_sync(sessions.sweep_expired, limit=500) == 1
    assert _row_status(client, later["id"]) == "expired"


def test_ephemeral_sessions_are_deleted_on_expiry(
    client: TestClient, api: Api, clock: Clock
) -> None:
    s = api.session(ttl_seconds=3600, ephemeral=True)
    clock.advance(3600)
    assert client.app.state.ctx.db.write_sync(sessions.sweep_expired, limit=500) == 1  # type: ignore[attr-defined]
    api.get(f"/v1/sessions/{s['id']}", expect=404, code="not_found")


def test_ttl_patch_sets_and_clears_expiry(api: Api, clock: Clock) -> None:
    s = api.session()
    assert s["expiresAt"] is None
    out = api.patch(f"/v1/sessions/{s['id']}", {"ttlSeconds": 60}, expect=200).json()["session"]
    assert out["ttlSeconds"] == 60 and out["expiresAt"] is not None
    out = api.patch(f"/v1/sessions/{s['id']}", {"ttlSeconds": None}, expect=200).json()["session"]
    assert out["ttlSeconds"] is None and out["expiresAt"] is None
    clock.advance(3600)
    assert _status(api, s["id"]) == "active"  # the cleared TTL is really gone
    api.patch(f"/v1/sessions/{s['id']}", {"ttlSeconds": 0}, expect=422, code="validation_error")


# -- the background sweep runs only when configured ---------------------------------------

SWEEP_TASKS = {"sweeper", "summaries"}


def _app_tasks(client: TestClient) -> set[str]:
    """The names of the tasks running on the app's event loop."""

    async def names() -> set[str]:
        return {task.get_name() for task in asyncio.all_tasks()}

    assert client.portal is not None
    return client.portal.call(names)


def test_tests_run_without_the_background_sweep(client: TestClient) -> None:
    assert client.app.state.ctx.settings.sweep_interval_seconds is None  # type: ignore[attr-defined]
    assert not SWEEP_TASKS & _app_tasks(client)


@pytest.mark.sweeper
def test_a_test_marked_sweeper_runs_it(client: TestClient) -> None:
    assert _app_tasks(client) >= SWEEP_TASKS


@pytest.mark.parametrize("interval", [None, 0])
def test_no_interval_no_sweep(settings: Settings, interval: float | None) -> None:
    settings.sweep_interval_seconds = interval
    with TestClient(create_app(settings)) as c:
        assert not SWEEP_TASKS & _app_tasks(c)


def test_servers_sweep_by_default() -> None:
    assert Settings().sweep_interval_seconds == 5.0
