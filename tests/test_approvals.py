"""Approvals: request, decide exactly once, long-poll, list, the account-wide review queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sessiond.auth import service as auth
from sessiond.settings import Settings
from tests.support.api import Api, Tenant
from tests.support.clock import Clock
from tests.support.live import Live, live_server

FIELDS = {
    "id",
    "sessionId",
    "workspaceId",
    "title",
    "details",
    "kind",
    "options",
    "status",
    "comment",
    "optionId",
    "decidedAt",
    "decidedBy",
    "createdAt",
}


def _events(api: Api, sid: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/sessions/{sid}/events?limit=200", expect=200).json()["events"]  # type: ignore[no-any-return]


def _types(api: Api, sid: str) -> list[str]:
    return [e["type"] for e in _events(api, sid)]


def _request(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "May I?")
    r = api.post(f"/v1/sessions/{sid}/approvals", body, expect=201)
    return r.json()["approval"]  # type: ignore[no-any-return]


def _list(api: Api, path: str) -> list[dict[str, Any]]:
    return api.get(path, expect=200).json()["approvals"]  # type: ignore[no-any-return]


# -- create and read -----------------------------------------------------------------------


def test_request_an_approval(api: Api) -> None:
    sid = api.session()["id"]
    details = {"command": "rm -rf build", "cwd": "/work", "nested": [1, {"a": None}]}
    options = [{"optionId": "once", "name": "Allow once"}, "always", 3]
    r = api.post(
        f"/v1/sessions/{sid}/approvals",
        {"title": "Run a command", "details": details, "kind": "exec", "options": options},
        expect=201,
    )
    assert r.headers["cache-control"] == "no-store"
    approval = r.json()["approval"]
    assert set(approval) == FIELDS
    assert approval["id"].startswith("apr_") and len(approval["id"]) == 30
    assert approval["sessionId"] == sid and approval["workspaceId"] == "default"
    assert approval["title"] == "Run a command"
    assert approval["details"] == details and approval["options"] == options
    assert approval["kind"] == "exec" and approval["status"] == "pending"
    assert approval["comment"] is None and approval["decidedAt"] is None
    assert approval["decidedBy"] is None
    assert approval["createdAt"].endswith("Z") and len(approval["createdAt"]) == 24
    got = api.get(f"/v1/sessions/{sid}/approvals/{approval['id']}", expect=200).json()
    assert got == {"approval": approval}
    events = _events(api, sid)
    assert [e["type"] for e in events] == ["session.created", "approval.requested"]
    assert events[1]["data"] == {"approval": approval}
    assert events[1]["sessionId"] == sid and events[1]["workspaceId"] == "default"


def test_request_defaults_and_any_json_details(api: Api) -> None:
    sid = api.session()["id"]
    a = _request(api, sid, title="x")
    assert (a["details"], a["kind"], a["options"]) == (None, None, None)
    for details in ("text", 42, [1, 2], True, None):
        assert _request(api, sid, details=details)["details"] == details
    assert _request(api, sid, options=[])["options"] == []
    assert _request(api, sid, title="t" * 500, kind="k" * 100)["title"] == "t" * 500


def test_request_validation_writes_nothing(api: Api) -> None:
    sid = api.session()["id"]
    path = f"/v1/sessions/{sid}/approvals"
    big = "x" * (64 * 1024)
    cases: list[tuple[Any, str]] = [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "t" * 501}, "title"),
        ({"title": 5}, "title"),
        ({"title": None}, "title"),
        ({"title": "x", "kind": "k" * 101}, "kind"),
        ({"title": "x", "kind": ""}, "kind"),
        ({"title": "x", "kind": 1}, "kind"),
        ({"title": "x", "options": "yes,no"}, "options"),
        ({"title": "x", "options": {"a": 1}}, "options"),
        ({"title": "x", "options": list(range(51))}, "options"),
        ({"title": "x", "options": [big]}, "options"),
        ({"title": "x", "details": {"blob": big}}, "details"),
        ({"title": "x", "detials": {}}, "detials"),
    ]
    for body, field in cases:
        r = api.post(path, body, expect=422, code="validation_error")
        fields = [e["field"] for e in r.json()["details"]["errors"]]
        assert field in fields, (body if len(str(body)) < 200 else field, fields)
    r = api.post(
        path,
        content=b'{"title": "x", "details": {"n": NaN}}',
        headers={"Content-Type": "application/json"},
        expect=400,
        code="invalid_json",  # NaN is not JSON (sessiond.values)
    )
    assert "NaN" in r.json()["error"]
    json_type = {"Content-Type": "application/json"}
    api.post(path, content=b'{"title": ', headers=json_type, expect=400, code="invalid_json")
    assert _list(api, path) == []
    assert _types(api, sid) == ["session.created"]


def test_not_found(api: Api) -> None:
    sid = api.session()["id"]
    sid2 = api.session()["id"]
    a = _request(api, sid)
    missing = "apr_01JDZZZZZZZZZZZZZZZZZZZZZZ"
    for path in (
        f"/v1/sessions/{sid}/approvals/{missing}",
        f"/v1/sessions/{sid2}/approvals/{a['id']}",  # another session of the same account
        f"/v1/sessions/ses_nope/approvals/{a['id']}",
    ):
        api.get(path, expect=404, code="not_found")
        api.get(path + "?wait=1", expect=404, code="not_found")
        api.post(path + "/grant", expect=404, code="not_found")
        api.post(path + "/deny", {"comment": "no"}, expect=404, code="not_found")
    api.get("/v1/sessions/ses_nope/approvals", expect=404, code="not_found")
    api.post("/v1/sessions/ses_nope/approvals", {"title": "x"}, expect=404, code="not_found")
    assert api.get(f"/v1/sessions/{sid}/approvals/{a['id']}").json()["approval"] == a


# -- decisions -----------------------------------------------------------------------------


def test_grant_once(api: Api) -> None:
    sid = api.session()["id"]
    a = _request(api, sid)
    key_id = api.get("/v1/me").json()["key"]["id"]
    base = f"/v1/sessions/{sid}/approvals/{a['id']}"
    r = api.post(base + "/grant", {"comment": "go ahead"}, expect=200)
    granted = r.json()["approval"]
    assert granted["status"] == "granted" and granted["comment"] == "go ahead"
    assert granted["decidedBy"] == key_id and granted["decidedAt"].endswith("Z")
    assert {
        k: granted[k] for k in FIELDS - {"status", "comment", "decidedAt", "decidedBy", "optionId"}
    } == {k: a[k] for k in FIELDS - {"status", "comment", "decidedAt", "decidedBy", "optionId"}}
    for verdict in ("grant", "deny"):
        r = api.post(base + f"/{verdict}", {"comment": "again"}, expect=409)
        body = r.json()
        assert body["code"] == "invalid_transition" and body["details"] == {"status": "granted"}
        assert "granted" in body["error"]
    assert api.get(base).json()["approval"] == granted
    events = _events(api, sid)
    assert [e["type"] for e in events] == [
        "session.created",
        "approval.requested",
        "approval.resolved",
    ]
    assert events[2]["data"] == {"approval": granted}


def test_deny_without_a_body(api: Api) -> None:
    sid = api.session()["id"]
    a = _request(api, sid)
    base = f"/v1/sessions/{sid}/approvals/{a['id']}"
    denied = api.post(base + "/deny", expect=200).json()["approval"]
    assert denied["status"] == "denied" and denied["comment"] is None
    r = api.post(base + "/grant", expect=409, code="invalid_transition")
    assert r.json()["details"]["status"] == "denied"
    b = _request(api, sid)
    empty = api.post(f"/v1/sessions/{sid}/approvals/{b['id']}/deny", {}, expect=200)
    assert empty.json()["approval"]["status"] == "denied"
    c = _request(api, sid)
    nulled = api.post(f"/v1/sessions/{sid}/approvals/{c['id']}/grant", {"comment": None})
    assert nulled.status_code == 200 and nulled.json()["approval"]["comment"] is None


def test_decision_validation_writes_nothing(api: Api) -> None:
    sid = api.session()["id"]
    a = _request(api, sid)
    base = f"/v1/sessions/{sid}/approvals/{a['id']}"
    for body, field in (
        ({"comment": "c" * 10_001}, "comment"),
        ({"comment": 3}, "comment"),
        ({"reason": "typo"}, "reason"),
        ([], "body"),
    ):
        r = api.post(base + "/grant", body, expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"] == field
    json_type = {"Content-Type": "application/json"}
    api.post(base + "/deny", content=b"{nope", headers=json_type, expect=400, code="invalid_json")
    assert api.get(base).json()["approval"] == a
    assert _types(api, sid) == ["session.created", "approval.requested"]
    ok = api.post(base + "/grant", {"comment": "c" * 10_000}, expect=200).json()["approval"]
    assert len(ok["comment"]) == 10_000


def test_writes_need_an_active_session(api: Api, clock: Clock) -> None:
    closed = api.session()["id"]
    archived = api.session()["id"]
    expired = api.session(ttlSeconds=60)["id"]
    pending = {sid: _request(api, sid) for sid in (closed, archived, expired)}
    api.post(f"/v1/sessions/{closed}/close", expect=200)
    api.patch(f"/v1/sessions/{archived}", {"status": "archived"}, expect=200)
    clock.advance(60)
    for sid, a in pending.items():
        before = _types(api, sid)
        api.post(
            f"/v1/sessions/{sid}/approvals", {"title": "x"}, expect=409, code="session_not_active"
        )
        base = f"/v1/sessions/{sid}/approvals/{a['id']}"
        for verdict in ("grant", "deny"):
            api.post(f"{base}/{verdict}", expect=409, code="session_not_active")
        # Reads work on any status.
        assert api.get(base, expect=200).json()["approval"] == a
        assert api.get(base + "?wait=0", expect=200).json()["approval"] == a
        assert _list(api, f"/v1/sessions/{sid}/approvals") == [a]
        # (the closed one's summary and its memory item arrive in the background)
        later = ("session.status", "session.updated", "memory.created")
        after = [t for t in _types(api, sid) if t not in later]
        assert after == [t for t in before if t not in later]


def test_read_key_cannot_write(api: Api, tenant: Tenant) -> None:
    reader = Api(api.client, tenant.read)
    sid = api.session()["id"]
    a = _request(api, sid)
    base = f"/v1/sessions/{sid}/approvals"
    reader.post(base, {"title": "x"}, expect=403, code="forbidden")
    reader.post(f"{base}/{a['id']}/grant", expect=403, code="forbidden")
    reader.post(f"{base}/{a['id']}/deny", expect=403, code="forbidden")
    assert reader.get(f"{base}/{a['id']}", expect=200).json()["approval"] == a
    assert _list(reader, base) == [a]
    assert _list(reader, "/v1/approvals") == [a]
    assert api.get(f"{base}/{a['id']}").json()["approval"]["status"] == "pending"
    admin = Api(api.client, tenant.admin)
    admin_key = admin.get("/v1/me").json()["key"]["id"]
    granted = admin.post(f"{base}/{a['id']}/grant", expect=200).json()["approval"]
    assert granted["decidedBy"] == admin_key


def test_other_account_sees_nothing(api: Api, other: Tenant) -> None:
    them = Api(api.client, other.write)
    sid = api.session()["id"]
    a = _request(api, sid)
    base = f"/v1/sessions/{sid}/approvals"
    them.post(base, {"title": "x"}, expect=404, code="not_found")
    them.get(base, expect=404, code="not_found")
    them.get(f"{base}/{a['id']}", expect=404, code="not_found")
    them.get(f"{base}/{a['id']}?wait=1", expect=404, code="not_found")
    them.post(f"{base}/{a['id']}/grant", expect=404, code="not_found")
    them.post(f"{base}/{a['id']}/deny", expect=404, code="not_found")
    assert _list(them, "/v1/approvals") == []
    assert _list(them, f"/v1/approvals?sessionId={sid}") == []
    assert _list(them, "/v1/approvals?status=pending") == []
    # Their own approvals are theirs alone.
    theirs = _request(them, them.session()["id"])
    assert _list(them, "/v1/approvals") == [theirs]
    assert _list(api, "/v1/approvals") == [a]
    assert api.get(f"{base}/{a['id']}").json()["approval"]["status"] == "pending"


def test_idempotent_request(api: Api) -> None:
    sid = api.session()["id"]
    path = f"/v1/sessions/{sid}/approvals"
    h = {"Idempotency-Key": "apr-1"}
    first = api.post(path, {"title": "once"}, headers=h, expect=201)
    again = api.post(path, {"title": "once"}, headers=h, expect=201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.text == first.text
    api.post(path, {"title": "other"}, headers=h, expect=422, code="idempotency_mismatch")
    assert _list(api, path) == [first.json()["approval"]]
    assert _types(api, sid) == ["session.created", "approval.requested"]


# -- listing -------------------------------------------------------------------------------


def test_session_listing(api: Api) -> None:
    sid = api.session()["id"]
    other_sid = api.session()["id"]
    made = [_request(api, sid, title=f"a{i}") for i in range(5)]
    _request(api, other_sid)
    base = f"/v1/sessions/{sid}/approvals"
    api.post(f"{base}/{made[1]['id']}/grant", expect=200)
    api.post(f"{base}/{made[3]['id']}/deny", expect=200)
    every = _list(api, base)
    assert [a["title"] for a in every] == ["a0", "a1", "a2", "a3", "a4"]
    assert [a["title"] for a in _list(api, base + "?status=pending")] == ["a0", "a2", "a4"]
    assert [a["title"] for a in _list(api, base + "?status=granted")] == ["a1"]
    assert [a["title"] for a in _list(api, base + "?status=denied")] == ["a3"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get(base, params=params, expect=200).json()
        assert len(page["approvals"]) <= 2
        seen += [a["title"] for a in page["approvals"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ["a0", "a1", "a2", "a3", "a4"]
    page = api.get(base, params={"status": "pending", "limit": 2}).json()
    rest = api.get(base, params={"status": "pending", "cursor": page["nextCursor"]}).json()
    assert [a["title"] for a in rest["approvals"]] == ["a4"] and rest["nextCursor"] is None
    for bad in ("status=maybe", "status=Pending", "limit=0", "limit=201", "cursor=xyz"):
        r = api.get(f"{base}?{bad}", expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"] == bad.split("=")[0]
    sessions_cursor = api.get("/v1/sessions?limit=1").json()["nextCursor"]
    api.get(f"{base}?cursor={sessions_cursor}", expect=422, code="validation_error")


def test_review_queue(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team"}, expect=201)
    s1 = api.session()["id"]
    s2 = api.session(workspaceId="team")["id"]
    a1 = _request(api, s1, title="one")
    a2 = _request(api, s2, title="two")
    a3 = _request(api, s1, title="three")
    a4 = _request(api, s2, title="four")
    api.post(f"/v1/sessions/{s1}/approvals/{a3['id']}/grant", expect=200)
    assert a2["workspaceId"] == "team"

    def titles(query: str) -> list[str]:
        return [a["title"] for a in _list(api, f"/v1/approvals{query}")]

    assert titles("") == ["one", "two", "three", "four"]
    assert titles("?status=pending") == ["one", "two", "four"]
    assert titles("?status=granted") == ["three"]
    assert titles("?status=denied") == []
    assert titles("?status=pending&workspaceId=team") == ["two", "four"]
    assert titles("?workspaceId=default") == ["one", "three"]
    assert titles(f"?sessionId={s1}") == ["one", "three"]
    assert titles(f"?status=pending&sessionId={s2}&workspaceId=team") == ["two", "four"]
    assert titles(f"?sessionId={s2}&workspaceId=default") == []
    assert titles("?sessionId=ses_nope") == [] and titles("?workspaceId=nope") == []
    page = api.get("/v1/approvals", params={"status": "pending", "limit": 2}).json()
    assert [a["id"] for a in page["approvals"]] == [a1["id"], a2["id"]]
    rest = api.get(
        "/v1/approvals", params={"status": "pending", "limit": 2, "cursor": page["nextCursor"]}
    ).json()
    assert [a["id"] for a in rest["approvals"]] == [a4["id"]] and rest["nextCursor"] is None
    api.get("/v1/approvals?status=all", expect=422, code="validation_error")
    api.get("/v1/approvals?limit=500", expect=422, code="validation_error")
    api.get("/v1/approvals?cursor=!!", expect=422, code="validation_error")
    # Deleting a session takes its approvals with it.
    api.delete(f"/v1/sessions/{s2}", expect=204)
    assert titles("") == ["one", "three"]


# -- long-poll -----------------------------------------------------------------------------


def test_wait_validation_and_decided_answers_at_once(api: Api) -> None:
    sid = api.session()["id"]
    a = _request(api, sid)
    base = f"/v1/sessions/{sid}/approvals/{a['id']}"
    for bad in ("-1", "61", "x", "1.5"):
        r = api.get(f"{base}?wait={bad}", expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"] == "wait"
    assert api.get(f"{base}?wait=0", expect=200).json()["approval"] == a
    granted = api.post(base + "/grant", expect=200).json()["approval"]
    started = time.monotonic()
    assert api.get(f"{base}?wait=60", expect=200).json()["approval"] == granted
    assert time.monotonic() - started < 1


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with live_server(settings) as server:
        yield server


def _bootstrap(live: Live) -> str:
    secret = live.app.state.ctx.db.write_sync(auth.bootstrap)
    assert secret is not None
    return str(secret)


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _setup(url: str, key: str) -> tuple[str, str]:
    with _client(url, key) as c:
        sid = c.post("/v1/sessions").json()["session"]["id"]
        r = c.post(f"/v1/sessions/{sid}/approvals", json={"title": "deploy?"})
        assert r.status_code == 201, r.text
        return sid, r.json()["approval"]["id"]


class Waiter:
    """``GET ...?wait=N`` on a thread; records the answer and how long it took."""

    def __init__(self, url: str, key: str, path: str) -> None:
        self.result: httpx.Response | None = None
        self.elapsed = 0.0
        self._thread = threading.Thread(target=self._run, args=(url, key, path), daemon=True)
        self._thread.start()

    def _run(self, url: str, key: str, path: str) -> None:
        started = time.monotonic()
        with _client(url, key) as c:
            self.result = c.get(path)
        self.elapsed = time.monotonic() - started

    def join(self, timeout: float) -> httpx.Response:
        self._thread.join(timeout)
        assert self.result is not None, "the long-poll did not return"
        return self.result


def test_wait_woken_by_a_decision(live: Live) -> None:
    key = _bootstrap(live)
    sid, aid = _setup(live.url, key)
    base = f"/v1/sessions/{sid}/approvals/{aid}"
    waiter = Waiter(live.url, key, f"{base}?wait=30")
    time.sleep(0.5)  # let it subscribe and read "pending"
    assert waiter.result is None
    with _client(live.url, key) as c:
        decided = c.post(base + "/deny", json={"comment": "not today"})
        assert decided.status_code == 200
    r = waiter.join(10)
    assert r.status_code == 200
    assert r.json()["approval"] == decided.json()["approval"]
    assert r.json()["approval"]["status"] == "denied"
    assert waiter.elapsed < 3  # woken by the decision, not by the end of the wait


def test_wait_ends_undecided(live: Live) -> None:
    key = _bootstrap(live)
    sid, aid = _setup(live.url, key)
    with _client(live.url, key) as c:
        # Another approval of the same session is decided meanwhile: not ours.
        other = c.post(f"/v1/sessions/{sid}/approvals", json={"title": "other"}).json()
        waiter = Waiter(live.url, key, f"/v1/sessions/{sid}/approvals/{aid}?wait=1")
        time.sleep(0.3)
        c.post(f"/v1/sessions/{sid}/approvals/{other['approval']['id']}/grant")
    r = waiter.join(10)
    assert r.status_code == 200
    assert r.json()["approval"]["status"] == "pending"
    assert 1.0 <= waiter.elapsed < 3


def test_concurrent_decisions_exactly_one_wins(live: Live) -> None:
    key = _bootstrap(live)
    sid, aid = _setup(live.url, key)
    base = f"/v1/sessions/{sid}/approvals/{aid}"
    barrier = threading.Barrier(12)

    def decide(i: int) -> tuple[int, dict[str, Any]]:
        verdict = "grant" if i % 2 else "deny"
        with _client(live.url, key) as c:
            c.get("/v1/me")  # connect before the race
            barrier.wait()
            r = c.post(f"{base}/{verdict}", json={"comment": f"by {i}"})
            return r.status_code, r.json()

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(decide, range(12)))
    winners = [body for status, body in results if status == 200]
    losers = [body for status, body in results if status != 200]
    assert len(winners) == 1, results
    assert len(losers) == 11
    final = winners[0]["approval"]
    assert all(b["code"] == "invalid_transition" for b in losers), losers
    assert all(b["details"] == {"status": final["status"]} for b in losers)
    with _client(live.url, key) as c:
        assert c.get(base).json()["approval"] == final
        events = c.get(f"/v1/sessions/{sid}/events").json()["events"]
    resolved = [e for e in events if e["type"] == "approval.resolved"]
    assert len(resolved) == 1 and resolved[0]["data"]["approval"] == final


def test_wait_woken_by_a_decision_on_another_instance(
    backend: str, settings: Settings, live: Live
) -> None:
    if backend != "postgresql":
        pytest.skip("instances share a database only on PostgreSQL")
    key = _bootstrap(live)
    settings.event_poll_seconds = 30.0  # the wake-up must come from NOTIFY, not the poll
    with live_server(settings) as second:
        sid, aid = _setup(live.url, key)
        base = f"/v1/sessions/{sid}/approvals/{aid}"
        waiter = Waiter(second.url, key, f"{base}?wait=30")
        time.sleep(0.5)
        assert waiter.result is None
        with _client(live.url, key) as c:
            decided = c.post(base + "/grant", json={"comment": "from A"})
            assert decided.status_code == 200
        r = waiter.join(10)
        assert r.status_code == 200
        assert r.json()["approval"] == decided.json()["approval"]
        assert waiter.elapsed < 3


def test_auth_and_session_preconditions(api: Api) -> None:
    sid = api.session()["id"]
    a = _request(api, sid)
    base = f"/v1/sessions/{sid}/approvals"
    anonymous = Api(api.client, "sk_not_a_key")
    for method, path in (
        ("POST", base),
        ("GET", base),
        ("GET", f"{base}/{a['id']}"),
        ("POST", f"{base}/{a['id']}/grant"),
        ("GET", "/v1/approvals"),
    ):
        anonymous.request(method, path, json={"title": "x"}, expect=401, code="unauthorized")
    stale = {"If-Match": '"99"'}
    api.post(base, {"title": "x"}, headers=stale, expect=412, code="precondition_failed")
    api.post(f"{base}/{a['id']}/grant", headers=stale, expect=412, code="precondition_failed")
    assert _list(api, base) == [a]
    current = {"If-Match": '"1"'}
    api.post(base, {"title": "y"}, headers=current, expect=201)
    api.post(f"{base}/{a['id']}/deny", headers=current, expect=200)
