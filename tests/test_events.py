"""Events: written with each change, polled, streamed over SSE, resumed with no gap."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sessiond.auth import service as auth
from sessiond.db.executor import Database, Tx
from sessiond.events.store import EventFilter, list_events
from sessiond.settings import Settings
from tests.support.api import Api, make_tenant
from tests.support.live import Live, live_server, parse_sse


def test_mutations_write_events(api: Api) -> None:
    s = api.session(title="a")
    sid = s["id"]
    api.patch(f"/v1/sessions/{sid}", {"title": "b"}, expect=200)
    api.patch(f"/v1/sessions/{sid}", {}, expect=200)  # no change, no event
    api.patch(f"/v1/sessions/{sid}/context", {"context": {"k": 1}}, expect=200)
    api.post(f"/v1/sessions/{sid}/close", expect=200)
    events = api.get(f"/v1/sessions/{sid}/events", expect=200).json()["events"]
    # The summary that closing produces arrives in the background (tests/test_summaries.py),
    # with the session's memory item (tests/test_memory.py).
    events = [
        e
        for e in events
        if e["data"].get("changes") != ["summary"] and not e["type"].startswith("memory.")
    ]
    assert [e["type"] for e in events] == [
        "session.created",
        "session.updated",
        "session.updated",
        "session.status",
        "session.updated",
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[0]["data"]["session"]["id"] == sid
    assert events[1]["data"]["changes"] == ["title"]
    assert events[2]["data"]["changes"] == ["context"]
    assert events[3]["data"] == {"from": "active", "to": "closed"}
    assert all(e["sessionId"] == sid and e["workspaceId"] == "default" for e in events)
    assert set(events[0]) == {"id", "type", "sessionId", "workspaceId", "data", "createdAt"}


def test_failed_write_leaves_no_event(api: Api) -> None:
    sid = api.session()["id"]
    api.patch(f"/v1/sessions/{sid}", {"status": "closed"}, expect=409)
    api.patch(f"/v1/sessions/{sid}", {"title": "x"}, headers={"If-Match": '"9"'}, expect=412)
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    assert [e["type"] for e in events] == ["session.created"]


def test_polling_pagination(api: Api) -> None:
    sid = api.session()["id"]
    for i in range(5):
        api.post(
            f"/v1/sessions/{sid}/events", {"type": "custom.tick", "data": {"i": i}}, expect=201
        )
    page = api.get(f"/v1/sessions/{sid}/events?limit=4").json()
    assert len(page["events"]) == 4 and page["nextCursor"] == str(page["events"][-1]["id"])
    rest = api.get(f"/v1/sessions/{sid}/events?after={page['nextCursor']}&limit=4").json()
    assert [e["data"]["i"] for e in rest["events"]] == [3, 4] and rest["nextCursor"] is None
    again = api.get(f"/v1/sessions/{sid}/events?cursor={page['nextCursor']}").json()
    assert again["events"] == rest["events"]
    api.get(f"/v1/sessions/{sid}/events?after=-1", expect=422, code="validation_error")


def test_custom_events(api: Api) -> None:
    sid = api.session()["id"]
    r = api.post(f"/v1/sessions/{sid}/events", {"type": "custom.build.done", "data": {"ok": 1}})
    assert r.status_code == 201
    event = r.json()["event"]
    assert event["type"] == "custom.build.done" and event["data"] == {"ok": 1}
    assert isinstance(event["id"], int)
    stored = api.get(f"/v1/sessions/{sid}/events?after={event['id'] - 1}").json()["events"]
    assert stored == [event]
    for bad in ("session.created", "custom.", "custom", "custom.a b", "x.custom.y"):
        api.post(f"/v1/sessions/{sid}/events", {"type": bad}, expect=422, code="validation_error")
    api.post(f"/v1/sessions/{sid}/events", {"type": "custom.x", "extra": 1}, expect=422)
    h = {"Idempotency-Key": "evt-1"}
    one = api.post(f"/v1/sessions/{sid}/events", {"type": "custom.once"}, headers=h).json()
    two = api.post(f"/v1/sessions/{sid}/events", {"type": "custom.once"}, headers=h).json()
    assert one == two
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    assert sum(e["type"] == "custom.once" for e in events) == 1


def test_deleting_a_session_deletes_its_events(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    api.delete(f"/v1/sessions/{sid}", expect=204)
    api.get(f"/v1/sessions/{sid}/events", expect=404)
    db: Database = client.app.state.ctx.db  # type: ignore[attr-defined]
    account_id = api.get("/v1/me").json()["account"]["id"]
    rows = db.read_sync(list_events, EventFilter(account_id), after=0, limit=100)
    assert [r["type"] for r in rows if r["session_id"] == sid] == ["session.deleted"]


# -- SSE over a real server ----------------------------------------------------------------


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    settings.heartbeat_seconds = 0.3
    with live_server(settings) as server:
        yield server


def _key(live: Live) -> str:
    secret = live.app.state.ctx.db.write_sync(auth.bootstrap)
    return str(secret)


class Reader:
    """Reads an SSE stream on a thread, collecting events until closed."""

    def __init__(self, url: str, key: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.comments = 0
        self.status = 0
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=30))
        self._stop = threading.Event()
        self._ready = threading.Event()
        h = {"Authorization": f"Bearer {key}", **(headers or {})}
        self._thread = threading.Thread(target=self._run, args=(url, h), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "stream did not open"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as r:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                self._ready.set()
                if r.status_code != 200:
                    return
                for item in parse_sse(r.iter_lines()):
                    if "comment" in item:
                        self.comments += 1
                    else:
                        self.events.append(item)
                    if self._stop.is_set():
                        return
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()

    def wait_for(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.events

    def close(self) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(timeout=5)


def test_sse_stream_live_and_heartbeat(live: Live) -> None:
    key = _key(live)
    c = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"})
    sid = c.post("/v1/sessions").json()["session"]["id"]
    reader = Reader(f"{live.url}/v1/sessions/{sid}/events/stream?after=0", key)
    try:
        assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
        for i in range(3):
            c.post(f"/v1/sessions/{sid}/events", json={"type": "custom.n", "data": {"i": i}})
        events = reader.wait_for(4)
        assert [e["event"] for e in events] == ["session.created"] + ["custom.n"] * 3
        payloads = [json.loads(e["data"]) for e in events]
        assert [int(e["id"]) for e in events] == [p["id"] for p in payloads]
        deadline = time.monotonic() + 5  # heartbeats every 0.3 s
        while reader.comments < 1:  # heartbeat comment lines
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.02)
    finally:
        reader.close()
        c.close()


def test_sse_errors_before_streaming(live: Live) -> None:
    key = _key(live)
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.get("/v1/sessions/ses_missing/events/stream")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = c.get("/v1/events/stream", headers={"Last-Event-ID": "abc"})
        assert r.status_code == 422 and r.json()["code"] == "validation_error"
        r = httpx.get(f"{live.url}/v1/events/stream")
        assert r.status_code == 401


def test_account_stream_filters(live: Live) -> None:
    key = _key(live)
    c = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"})
    c.post("/v1/workspaces", json={"id": "team"})
    readers = {
        "all": Reader(f"{live.url}/v1/events/stream", key),
        "team": Reader(f"{live.url}/v1/events/stream?workspaceId=team", key),
        "custom": Reader(f"{live.url}/v1/events/stream?types=custom.,session.deleted", key),
    }
    other = make_tenant(live, "other")
    foreign = Reader(f"{live.url}/v1/events/stream", other.admin)
    try:
        a = c.post("/v1/sessions").json()["session"]["id"]
        b = c.post("/v1/sessions", json={"workspaceId": "team"}).json()["session"]["id"]
        c.post(f"/v1/sessions/{a}/events", json={"type": "custom.ping"})
        c.delete(f"/v1/sessions/{b}")
        all_events = readers["all"].wait_for(4)
        assert [e["event"] for e in all_events] == [
            "session.created",
            "session.created",
            "custom.ping",
            "session.deleted",
        ]
        team = readers["team"].wait_for(2)
        assert [e["event"] for e in team] == ["session.created", "session.deleted"]
        assert [e["event"] for e in readers["custom"].wait_for(2)] == [
            "custom.ping",
            "session.deleted",
        ]
        # Another account sees nothing: once its own next event arrives, nothing written
        # before it (all of the above) can still be on its way.
        with httpx.Client(
            base_url=live.url, headers={"Authorization": f"Bearer {other.admin}"}
        ) as o:
            own = o.post("/v1/sessions").json()["session"]["id"]
        seen = foreign.wait_for(1)
        assert [(e["event"], json.loads(e["data"])["sessionId"]) for e in seen] == [
            ("session.created", own)
        ]
    finally:
        for r in [*readers.values(), foreign]:
            r.close()
        c.close()


def test_sse_resume_no_gap_no_duplicate_with_concurrent_writers(live: Live) -> None:
    """Readers disconnect and resume with Last-Event-ID while 8 writers keep publishing."""
    key = _key(live)
    c = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    sids = [c.post("/v1/sessions").json()["session"]["id"] for _ in range(4)]
    start_after = c.get(f"/v1/sessions/{sids[0]}/events").json()["events"][-1]["id"]
    per_writer = 40

    def writer(w: int) -> None:
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}) as wc:
            for i in range(per_writer):
                r = wc.post(
                    f"/v1/sessions/{sids[w % 4]}/events",
                    json={"type": "custom.w", "data": {"w": w, "i": i}},
                )
                assert r.status_code == 201, r.text

    received: list[int] = []
    last = start_after
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(writer, w) for w in range(8)]
        # Reconnect repeatedly: every connection reads a few events then drops.
        while not (all(f.done() for f in futures) and len(received) >= 8 * per_writer):
            reader = Reader(
                f"{live.url}/v1/events/stream?types=custom.",
                key,
                headers={"Last-Event-ID": str(last)},
            )
            got = reader.wait_for(random.randint(5, 30), timeout=2)
            reader.close()
            for e in list(got):
                received.append(int(e["id"]))
            if received:
                last = received[-1]
            if len(received) > 8 * per_writer + 50:
                break
        for f in futures:
            f.result()
    assert len(received) == len(set(received)), "duplicate delivery"
    assert received == sorted(received), "out of order"
    all_ids: list[int] = []
    for sid in sids:
        after = 0
        while True:
            page = c.get(f"/v1/sessions/{sid}/events?after={after}&limit=200").json()
            all_ids += [e["id"] for e in page["events"] if e["type"] == "custom.w"]
            if not page["nextCursor"]:
                break
            after = int(page["nextCursor"])
    assert sorted(all_ids) == received
    c.close()


# -- commit-order visibility (the PostgreSQL hazard; runs on both) -------------------------


def test_reader_never_skips_a_late_committing_event(client: TestClient, tenant: Any) -> None:
    """Writers allocate event ids, then hold their transaction open a random while before
    committing. A poller that resumes from the highest id it saw must still see every id."""
    db: Database = client.app.state.ctx.db  # type: ignore[attr-defined]
    account_id = tenant.account_id
    n_writers, per_writer = 12, 25
    done = threading.Event()

    def write_one(tx: Tx, w: int, i: int) -> None:
        tx.emit(account_id, "custom.order", {"w": w, "i": i})
        tx.flush_events()  # the id exists now...
        time.sleep(random.random() * 0.004)  # ...and commits later

    def writer(w: int) -> None:
        for i in range(per_writer):
            db.write_sync(write_one, w, i)

    seen: list[int] = []

    def poller() -> None:
        after = 0
        f = EventFilter(account_id, types=("custom.order",))
        while True:
            finished = done.is_set()
            rows = db.read_sync(list_events, f, after=after, limit=500)
            for r in rows:
                seen.append(r["id"])
                after = r["id"]
            if finished and not rows:
                return

    t = threading.Thread(target=poller)
    t.start()
    with ThreadPoolExecutor(n_writers) as pool:
        list(pool.map(writer, range(n_writers)))
    done.set()
    t.join(timeout=60)
    everything = [
        r["id"]
        for r in db.read_sync(
            list_events, EventFilter(account_id, types=("custom.order",)), after=0, limit=10_000
        )
    ]
    assert len(everything) == n_writers * per_writer
    assert seen == everything, f"poller missed {sorted(set(everything) - set(seen))[:10]}"


def test_bus_reads_the_database_when_another_writer_left_a_gap(
    settings: Settings, tenant: Any
) -> None:
    """Local commits are delivered without a read only when no id can be missing before
    them. An event committed by another process (here: a second executor on the same
    database, which never wakes this bus) makes the next local commit non-contiguous:
    the bus must read the database and deliver both, in id order."""
    with live_server(settings) as live:
        ctx = live.app.state.ctx
        sub = ctx.bus.subscribe(EventFilter(tenant.account_id, types=("custom.gap",)))
        other = Database(settings.resolved_database_url(), readers=1, pg_workers=2)
        other.start()
        try:

            def emit(tx: Tx, n: int) -> None:
                tx.emit(tenant.account_id, "custom.gap", {"n": n})

            other.write_sync(emit, 1)  # this bus hears nothing (on SQLite: no NOTIFY)
            ctx.db.write_sync(emit, 2)  # id follows a gap
            ctx.db.write_sync(emit, 3)
            got: list[int] = []
            deadline = time.monotonic() + 5

            async def take() -> None:
                while len(got) < 3 and time.monotonic() < deadline:
                    item = await asyncio.wait_for(sub.get(), 5)
                    if isinstance(item, dict):
                        got.append(item["data"]["n"])

            asyncio.run_coroutine_threadsafe(take(), ctx.bus._loop).result(timeout=10)
            assert got == [1, 2, 3]
        finally:
            sub.close()
            other.close()
