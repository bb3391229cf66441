"""Cache entries: versions, compare-and-set, TTL at read time, prefix listing, purge."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from sessiond.auth import service as auth
from sessiond.cache import service as cache
from sessiond.db import tables as t
from sessiond.db.executor import Database, Tx
from sessiond.ids import parse_iso
from sessiond.settings import Settings
from tests.support.api import Api, Tenant
from tests.support.clock import Clock
from tests.support.live import Live, live_server
from tests.support.purge import purge


def _types(api: Api, sid: str) -> list[str]:
    events = api.get(f"/v1/sessions/{sid}/events?limit=200", expect=200).json()["events"]
    return [e["type"] for e in events]


def _cache_events(api: Api, sid: str) -> list[tuple[str, Any]]:
    events = api.get(f"/v1/sessions/{sid}/events?limit=200", expect=200).json()["events"]
    return [(e["type"], e["data"]) for e in events if e["type"].startswith("cache.")]


def _keys(api: Api, sid: str, query: str = "") -> list[str]:
    r = api.get(f"/v1/sessions/{sid}/cache{query}", expect=200).json()
    return [e["key"] for e in r["entries"]]


def _db(api: Api) -> Database:
    return api.client.app.state.ctx.db  # type: ignore[union-attr, no-any-return]


def _raw_rows(api: Api, sid: str) -> list[tuple[str, int]]:
    def q(tx: Tx) -> list[tuple[str, int]]:
        c = t.cache_entries.c
        rows = tx.conn.execute(
            sa.select(c.key, c.version).where(c.session_id == sid).order_by(c.key)
        )
        return [(r.key, r.version) for r in rows]

    return _db(api).read_sync(q)


# -- put / get / delete --------------------------------------------------------------------


def test_put_get_versions(api: Api) -> None:
    sid = api.session()["id"]
    path = f"/v1/sessions/{sid}/cache/plan"
    r = api.put(path, {"value": {"steps": [1, 2]}}, expect=201)
    assert r.headers["cache-control"] == "no-store"
    entry = r.json()["entry"]
    assert set(entry) == {"key", "value", "version", "expiresAt", "updatedAt"}
    assert entry["key"] == "plan" and entry["value"] == {"steps": [1, 2]}
    assert entry["version"] == 1 and entry["expiresAt"] is None
    assert entry["updatedAt"].endswith("Z") and len(entry["updatedAt"]) == 24
    assert api.get(path, expect=200).json() == {"entry": entry}
    for i, value in enumerate(["text", 42, 1.5, [1, "a"], True, None, {"é": "ü"}], start=2):
        e = api.put(path, {"value": value}, expect=200).json()["entry"]
        assert e["version"] == i and e["value"] == value
        assert api.get(path).json()["entry"] == e
    assert _cache_events(api, sid)[0] == (
        "cache.updated",
        {"key": "plan", "version": 1, "expiresAt": None},
    )
    assert len(_cache_events(api, sid)) == 8
    assert all("value" not in data for _, data in _cache_events(api, sid))


def test_compare_and_set(api: Api) -> None:
    sid = api.session()["id"]
    path = f"/v1/sessions/{sid}/cache/lock"
    r = api.put(path, {"value": "x", "ifVersion": 3}, expect=409, code="version_conflict")
    assert r.json()["details"] == {"currentVersion": 0}
    assert api.put(path, {"value": "a", "ifVersion": 0}, expect=201).json()["entry"]["version"] == 1
    r = api.put(path, {"value": "b", "ifVersion": 0}, expect=409, code="version_conflict")
    assert r.json()["details"] == {"currentVersion": 1}
    assert api.put(path, {"value": "b", "ifVersion": 1}, expect=200).json()["entry"]["version"] == 2
    r = api.put(path, {"value": "c", "if_version": 1}, expect=409, code="version_conflict")
    assert r.json()["details"] == {"currentVersion": 2}
    assert api.put(path, {"value": "c", "if_version": 2}).json()["entry"]["version"] == 3
    # Rejected writes changed nothing.
    e = api.get(path).json()["entry"]
    assert (e["value"], e["version"]) == ("c", 3)
    assert [d["version"] for _, d in _cache_events(api, sid)] == [1, 2, 3]


def test_delete(api: Api) -> None:
    sid = api.session()["id"]
    path = f"/v1/sessions/{sid}/cache/k"
    api.delete(path, expect=404, code="not_found")
    api.put(path, {"value": 1}, expect=201)
    api.put(path, {"value": 2}, expect=200)
    r = api.delete(path + "?ifVersion=1", expect=409, code="version_conflict")
    assert r.json()["details"] == {"currentVersion": 2}
    api.delete(path + "?ifVersion=-1", expect=422, code="validation_error")
    r = api.delete(path + "?ifVersion=x", expect=422, code="validation_error")
    assert r.json()["details"]["errors"][0]["field"] == "ifVersion"
    assert api.get(path).json()["entry"]["version"] == 2
    api.delete(path + "?ifVersion=2", expect=204)
    api.get(path, expect=404, code="not_found")
    api.delete(path, expect=404, code="not_found")
    assert _cache_events(api, sid)[-1] == ("cache.deleted", {"key": "k"})
    assert [typ for typ, _ in _cache_events(api, sid)].count("cache.deleted") == 1
    # A new entry under the same key starts again at version 1.
    assert api.put(path, {"value": 3}, expect=201).json()["entry"]["version"] == 1
    api.delete(path, expect=204)
    assert _raw_rows(api, sid) == []


def test_keys(api: Api) -> None:
    sid = api.session()["id"]
    base = f"/v1/sessions/{sid}/cache"
    for key in ("a/b/c", "dir/", "with space", "ünïcødé ✓", "a%b?c#d", "x" * 512, "/lead"):
        path = f"{base}/{quote(key, safe='/')}"
        e = api.put(path, {"value": key}, expect=201).json()["entry"]
        assert e["key"] == key
        assert api.get(path, expect=200).json()["entry"]["value"] == key
    assert sorted(_keys(api, sid)) == sorted(
        ["a/b/c", "dir/", "with space", "ünïcødé ✓", "a%b?c#d", "x" * 512, "/lead"]
    )
    api.delete(f"{base}/a/b/c", expect=204)
    api.get(f"{base}/a/b/c", expect=404)
    for bad in ("x" * 513, "tab%09here", "nl%0A", "mid%0Aline", "%0A", "%7F"):
        r = api.put(f"{base}/{bad}", {"value": 1}, expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"] == "key"
        api.get(f"{base}/{bad}", expect=422, code="validation_error")
        api.delete(f"{base}/{bad}", expect=422, code="validation_error")
    api.get(f"{base}/", expect=422, code="validation_error")  # an empty key
    api.put(f"{base}/", {"value": 1}, expect=422, code="validation_error")


def test_put_validation_writes_nothing(api: Api, settings: Settings) -> None:
    sid = api.session()["id"]
    path = f"/v1/sessions/{sid}/cache/k"
    cases: list[tuple[Any, str]] = [
        ({}, "value"),
        ({"ttlSeconds": 5}, "value"),
        ({"value": 1, "ttlSeconds": 0}, "ttlSeconds"),
        ({"value": 1, "ttlSeconds": -1}, "ttlSeconds"),
        ({"value": 1, "ttlSeconds": 10 * 365 * 24 * 3600 + 1}, "ttlSeconds"),
        ({"value": 1, "ttlSeconds": "5"}, "ttlSeconds"),
        ({"value": 1, "ttlSeconds": 1.5}, "ttlSeconds"),
        ({"value": 1, "ifVersion": -1}, "ifVersion"),
        ({"value": 1, "ifVersion": "1"}, "ifVersion"),
        ({"value": 1, "version": 1}, "version"),
        ([1], "body"),
    ]
    for body, field in cases:
        r = api.put(path, body, expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"] == field, (body, r.json())
    r = api.put(
        path,
        content=b'{"value": [Infinity]}',
        headers={"Content-Type": "application/json"},
        expect=400,
        code="invalid_json",  # Infinity is not JSON (sessiond.values)
    )
    assert "Infinity" in r.json()["error"]
    settings.limits.cache_value_bytes = 1000
    r = api.put(path, {"value": "x" * 999}, expect=413, code="payload_too_large")
    assert r.json()["details"] == {"limit": 1000, "size": 1001}
    assert api.put(path, {"value": "x" * 998}, expect=201).json()["entry"]["version"] == 1
    api.put(path, {"value": "é" * 500}, expect=413, code="payload_too_large")  # bytes, not chars
    assert api.get(path).json()["entry"]["value"] == "x" * 998
    assert _types(api, sid) == ["session.created", "cache.updated"]
    api.put(f"/v1/sessions/{sid}/cache/valid", {"value": 1, "ttlSeconds": None}, expect=201)
    long_ttl = {"value": 1, "ttl_seconds": 10 * 365 * 24 * 3600}
    assert api.put(f"/v1/sessions/{sid}/cache/long", long_ttl, expect=201).json()["entry"][
        "expiresAt"
    ]


# -- TTL -----------------------------------------------------------------------------------


def test_ttl_is_honoured_at_read_time(api: Api, clock: Clock) -> None:
    sid = api.session()["id"]
    base = f"/v1/sessions/{sid}/cache"
    e = api.put(f"{base}/short", {"value": "s", "ttlSeconds": 60}, expect=201).json()["entry"]
    assert parse_iso(e["expiresAt"]) - parse_iso(e["updatedAt"]) == 60_000
    api.put(f"{base}/short2", {"value": "s", "ttlSeconds": 60}, expect=201)
    api.put(f"{base}/short2", {"value": "t", "ttlSeconds": 60}, expect=200)
    api.put(f"{base}/forever", {"value": "f"}, expect=201)
    api.put(f"{base}/longer", {"value": "l", "ttlSeconds": 120}, expect=201)
    # A write without ttlSeconds makes the entry permanent again.
    api.put(f"{base}/renewed", {"value": 1, "ttlSeconds": 60}, expect=201)
    renewed = api.put(f"{base}/renewed", {"value": 2}, expect=200).json()["entry"]
    assert renewed["expiresAt"] is None
    assert _keys(api, sid) == ["forever", "longer", "renewed", "short", "short2"]
    clock.advance(50)
    assert _keys(api, sid) == ["forever", "longer", "renewed", "short", "short2"]
    api.get(f"{base}/short", expect=200)
    clock.advance(10)
    api.get(f"{base}/short", expect=404, code="not_found")
    assert _keys(api, sid) == ["forever", "longer", "renewed"]
    assert _keys(api, sid, "?prefix=short") == []
    api.delete(f"{base}/short", expect=404, code="not_found")
    r = api.put(f"{base}/short2", {"value": "n", "ifVersion": 2}, expect=409)
    assert r.json()["details"] == {"currentVersion": 0}
    new = api.put(f"{base}/short2", {"value": "n", "ifVersion": 0}, expect=201).json()["entry"]
    assert (new["version"], new["expiresAt"]) == (1, None)
    again = api.put(f"{base}/short", {"value": "again"}, expect=201).json()["entry"]
    assert again["version"] == 1
    assert _keys(api, sid) == ["forever", "longer", "renewed", "short", "short2"]


@pytest.mark.sweeper
def test_sweeper_purges_expired_entries(api: Api, clock: Clock) -> None:
    sid = api.session()["id"]
    api.put(f"/v1/sessions/{sid}/cache/gone", {"value": 1, "ttlSeconds": 60}, expect=201)
    api.put(f"/v1/sessions/{sid}/cache/later", {"value": 1, "ttlSeconds": 3600}, expect=201)
    api.put(f"/v1/sessions/{sid}/cache/kept", {"value": 1}, expect=201)
    clock.advance(60)
    deadline = time.monotonic() + 5  # the sweep runs every 0.05 s in tests
    while _raw_rows(api, sid) != [("kept", 1), ("later", 1)]:
        assert time.monotonic() < deadline, _raw_rows(api, sid)
        time.sleep(0.02)
    assert _cache_events(api, sid)[-1][0] == "cache.updated"  # a purge emits nothing


def test_purge_expired(api: Api, clock: Clock) -> None:
    db = _db(api)
    sid = api.session()["id"]
    for i in range(5):
        api.put(f"/v1/sessions/{sid}/cache/e{i}", {"value": i, "ttlSeconds": 60}, expect=201)
    api.put(f"/v1/sessions/{sid}/cache/live", {"value": 0, "ttlSeconds": 3600}, expect=201)
    api.put(f"/v1/sessions/{sid}/cache/forever", {"value": 0}, expect=201)
    assert db.write_sync(cache.purge_expired, limit=1000) == 0
    clock.advance(60)
    assert db.write_sync(cache.purge_expired, limit=3) == 3
    assert db.write_sync(cache.purge_expired, limit=1000) == 2
    assert db.write_sync(cache.purge_expired, limit=1000) == 0
    assert _raw_rows(api, sid) == [("forever", 1), ("live", 1)]


# -- listing -------------------------------------------------------------------------------


def test_listing_prefix_and_pagination(api: Api) -> None:
    sid = api.session()["id"]
    keys = ["a", "a/1", "a/2", "A/3", "ab", "b", "a%x", "a_y", "é", "z", "a\\z", "Ab"]
    for key in keys:
        api.put(f"/v1/sessions/{sid}/cache/{quote(key, safe='/')}", {"value": key}, expect=201)
    in_byte_order = sorted(keys, key=lambda k: k.encode("utf-8"))
    assert _keys(api, sid) == in_byte_order
    entries = api.get(f"/v1/sessions/{sid}/cache").json()["entries"]
    assert all(e["value"] == e["key"] and e["version"] == 1 for e in entries)

    def listed(prefix: str) -> list[str]:
        r = api.get(f"/v1/sessions/{sid}/cache", params={"prefix": prefix}, expect=200).json()
        return [e["key"] for e in r["entries"]]

    assert listed("a/") == ["a/1", "a/2"]
    assert listed("A") == ["A/3", "Ab"]  # case-sensitive on both backends
    assert listed("a") == [k for k in in_byte_order if k.startswith("a")]
    assert listed("a%") == ["a%x"] and listed("a_") == ["a_y"]  # no LIKE wildcards
    assert listed("a\\") == ["a\\z"]
    assert listed("é") == ["é"] and listed("q") == [] and listed("") == in_byte_order
    # Pagination, with and without a prefix.
    for prefix, expected in (("", in_byte_order), ("a", listed("a"))):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "prefix": prefix}
            if cursor:
                params["cursor"] = cursor
            page = api.get(f"/v1/sessions/{sid}/cache", params=params, expect=200).json()
            assert len(page["entries"]) <= 2
            seen += [e["key"] for e in page["entries"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == expected
    exact = api.get(f"/v1/sessions/{sid}/cache", params={"limit": len(keys)}).json()
    assert exact["nextCursor"] is None and len(exact["entries"]) == len(keys)
    for bad in ("limit=0", "limit=201", "cursor=zzz", f"prefix={'p' * 513}", "prefix=%09"):
        r = api.get(f"/v1/sessions/{sid}/cache?{bad}", expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"] == bad.split("=")[0]
    sessions_cursor = api.get("/v1/sessions?limit=1").json()["nextCursor"]
    api.get(f"/v1/sessions/{sid}/cache?cursor={sessions_cursor}", expect=422)
    assert api.get(f"/v1/sessions/{api.session()['id']}/cache").json() == {
        "entries": [],
        "nextCursor": None,
    }


def test_listing_page_stops_early_on_large_values(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = api.session()["id"]
    for i in range(5):
        api.put(f"/v1/sessions/{sid}/cache/k{i}", {"value": "v" * 40}, expect=201)
    monkeypatch.setattr(cache, "PAGE_CHARS", 100)  # 42 characters of JSON per value
    seen: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/v1/sessions/{sid}/cache", params=params).json()
        seen.append([e["key"] for e in page["entries"]])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [["k0", "k1"], ["k2", "k3"], ["k4"]]


# -- sessions, roles, accounts -------------------------------------------------------------


def test_writes_need_an_active_session(api: Api, clock: Clock) -> None:
    closed = api.session()["id"]
    archived = api.session()["id"]
    expired = api.session(ttlSeconds=60)["id"]
    for sid in (closed, archived, expired):
        api.put(f"/v1/sessions/{sid}/cache/k", {"value": sid}, expect=201)
    api.post(f"/v1/sessions/{closed}/close", expect=200)
    api.patch(f"/v1/sessions/{archived}", {"status": "archived"}, expect=200)
    clock.advance(60)
    for sid in (closed, archived, expired):
        base = f"/v1/sessions/{sid}/cache"
        api.put(f"{base}/k", {"value": 2}, expect=409, code="session_not_active")
        api.put(f"{base}/new", {"value": 2}, expect=409, code="session_not_active")
        api.delete(f"{base}/k", expect=409, code="session_not_active")
        entry = api.get(f"{base}/k", expect=200).json()["entry"]
        assert (entry["value"], entry["version"]) == (sid, 1)
        assert _keys(api, sid) == ["k"]
        assert [typ for typ, _ in _cache_events(api, sid)] == ["cache.updated"]


def test_read_key_cannot_write(api: Api, tenant: Tenant) -> None:
    reader = Api(api.client, tenant.read)
    sid = api.session()["id"]
    base = f"/v1/sessions/{sid}/cache"
    api.put(f"{base}/k", {"value": 1}, expect=201)
    reader.put(f"{base}/k", {"value": 2}, expect=403, code="forbidden")
    reader.put(f"{base}/new", {"value": 2}, expect=403, code="forbidden")
    reader.delete(f"{base}/k", expect=403, code="forbidden")
    assert reader.get(f"{base}/k", expect=200).json()["entry"]["value"] == 1
    assert _keys(reader, sid) == ["k"]


def test_other_account_sees_nothing(api: Api, other: Tenant) -> None:
    them = Api(api.client, other.write)
    sid = api.session()["id"]
    base = f"/v1/sessions/{sid}/cache"
    api.put(f"{base}/k", {"value": 1}, expect=201)
    them.get(f"{base}/k", expect=404, code="not_found")
    them.get(f"{base}/missing", expect=404, code="not_found")
    them.get(base, expect=404, code="not_found")
    them.put(f"{base}/k", {"value": 2}, expect=404, code="not_found")
    them.put(f"{base}/k", {"value": 2, "ifVersion": 1}, expect=404, code="not_found")
    them.delete(f"{base}/k", expect=404, code="not_found")
    api.get("/v1/sessions/ses_nope/cache", expect=404, code="not_found")
    api.get("/v1/sessions/ses_nope/cache/k", expect=404, code="not_found")
    api.put("/v1/sessions/ses_nope/cache/k", {"value": 1}, expect=404, code="not_found")
    entry = api.get(f"{base}/k").json()["entry"]
    assert (entry["value"], entry["version"]) == (1, 1)
    # Entries are per session: the same key elsewhere is another entry.
    sid2 = api.session()["id"]
    api.get(f"/v1/sessions/{sid2}/cache/k", expect=404)
    assert api.put(f"/v1/sessions/{sid2}/cache/k", {"value": 9}).json()["entry"]["version"] == 1
    api.delete(f"/v1/sessions/{sid}", expect=204)
    purge(api.client)  # rows go in the background (docs/design/deletion.md)
    assert _raw_rows(api, sid) == []
    assert api.get(f"/v1/sessions/{sid2}/cache/k").json()["entry"]["value"] == 9


# -- concurrency ---------------------------------------------------------------------------


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    with live_server(settings) as server:
        yield server


def _client(live: Live, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_compare_and_set_race_has_one_winner(live: Live) -> None:
    key = str(live.app.state.ctx.db.write_sync(auth.bootstrap))
    with _client(live, key) as c:
        sid = c.post("/v1/sessions").json()["session"]["id"]
        path = f"/v1/sessions/{sid}/cache/counter"
        assert c.put(path, json={"value": 0}).status_code == 201
        assert c.put(path, json={"value": 1}).json()["entry"]["version"] == 2
    n = 12
    barrier = threading.Barrier(n)

    def attempt(i: int) -> tuple[int, dict[str, Any]]:
        with _client(live, key) as c:
            c.get("/v1/me")  # connect before the race
            barrier.wait()
            r = c.put(path, json={"value": f"by {i}", "ifVersion": 2})
            return r.status_code, r.json()

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(attempt, range(n)))
    winners = [body for status, body in results if status == 200]
    losers = [body for status, body in results if status != 200]
    assert len(winners) == 1, results
    assert all(b["code"] == "version_conflict" for b in losers), losers
    assert all(b["details"] == {"currentVersion": 3} for b in losers)
    with _client(live, key) as c:
        entry = c.get(path).json()["entry"]
        assert entry == winners[0]["entry"] and entry["version"] == 3

        # Without ifVersion every write lands: no lost update, one version each.
        def bump(i: int) -> int:
            with _client(live, key) as c2:
                return c2.put(path, json={"value": i}).status_code

        with ThreadPoolExecutor(n) as pool:
            assert set(pool.map(bump, range(n))) == {200}
        assert c.get(path).json()["entry"]["version"] == 3 + n
        events = c.get(f"/v1/sessions/{sid}/events?limit=200").json()["events"]
        versions = [e["data"]["version"] for e in events if e["type"] == "cache.updated"]
        assert versions == list(range(1, 4 + n))


def test_auth_and_session_preconditions(api: Api) -> None:
    sid = api.session()["id"]
    base = f"/v1/sessions/{sid}/cache"
    api.put(f"{base}/k", {"value": 1}, expect=201)
    anonymous = Api(api.client, "sk_not_a_key")
    for method, path in (("PUT", f"{base}/k"), ("GET", f"{base}/k"), ("DELETE", f"{base}/k")):
        anonymous.request(method, path, json={"value": 2}, expect=401, code="unauthorized")
    anonymous.get(base, expect=401, code="unauthorized")
    stale = {"If-Match": '"99"'}
    api.put(f"{base}/k", {"value": 2}, headers=stale, expect=412, code="precondition_failed")
    api.delete(f"{base}/k", headers=stale, expect=412, code="precondition_failed")
    assert api.get(f"{base}/k").json()["entry"]["version"] == 1
    api.put(f"{base}/k", {"value": 2}, headers={"If-Match": '"1"'}, expect=200)
    api.delete(f"{base}/k", headers={"If-Match": '"1"'}, expect=204)
