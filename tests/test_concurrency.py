"""Concurrent clients over real HTTP: no lost update, idempotent retries, one winner."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sessiond.auth import service as auth
from sessiond.settings import Settings
from tests.support.live import Live, live_server


@pytest.fixture
def live(settings: Settings) -> Any:
    with live_server(settings) as server:
        yield server


@pytest.fixture
def key(live: Live) -> str:
    secret = live.app.state.ctx.db.write_sync(auth.bootstrap)
    assert secret is not None
    return str(secret)


def _client(live: Live, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_twenty_concurrent_patches_lose_nothing(live: Live, key: str) -> None:
    with _client(live, key) as c:
        sid = c.post("/v1/sessions", json={"metadata": {"done": []}}).json()["session"]["id"]

    def worker(n: int) -> int:
        conflicts = 0
        with _client(live, key) as c:
            while True:
                r = c.get(f"/v1/sessions/{sid}")
                etag = r.headers["etag"]
                done = r.json()["session"]["metadata"]["done"]
                p = c.patch(
                    f"/v1/sessions/{sid}",
                    json={"metadata": {"done": [*done, n]}},
                    headers={"If-Match": etag},
                )
                if p.status_code == 200:
                    return conflicts
                assert p.status_code == 412, p.text
                assert p.json()["code"] == "precondition_failed"
                conflicts += 1

    with ThreadPoolExecutor(20) as pool:
        conflicts = sum(pool.map(worker, range(20)))
    with _client(live, key) as c:
        s = c.get(f"/v1/sessions/{sid}").json()["session"]
    assert sorted(s["metadata"]["done"]) == list(range(20))
    assert s["lifecycleVersion"] == 21
    assert conflicts > 0  # they really raced


def test_idempotent_create_under_concurrent_retries(live: Live, key: str) -> None:
    body = {"title": "once", "tags": ["idem"]}
    headers = {"Idempotency-Key": "create-once-1"}

    def attempt(_: int) -> tuple[int, str]:
        with _client(live, key) as c:
            r = c.post("/v1/sessions", json=body, headers=headers)
            return r.status_code, r.text

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert {status for status, _ in results} == {201}
    assert len({text for _, text in results}) == 1  # the same body, byte for byte
    with _client(live, key) as c:
        listed = c.get("/v1/sessions?tag=idem").json()["sessions"]
        assert len(listed) == 1
        r = c.post("/v1/sessions", json={"title": "different"}, headers=headers)
        assert r.status_code == 422 and r.json()["code"] == "idempotency_mismatch"
        r = c.post("/v1/sessions", json=body, headers=headers)
        assert r.status_code == 201 and r.headers["idempotent-replayed"] == "true"
        assert r.text == results[0][1]
        # The same key is independent per account and per path is part of the fingerprint.
        r = c.post("/v1/workspaces", json={"id": "w1"}, headers=headers)
        assert r.status_code == 422 and r.json()["code"] == "idempotency_mismatch"


def test_concurrent_close_exactly_one_wins(live: Live, key: str) -> None:
    with _client(live, key) as c:
        sid = c.post("/v1/sessions").json()["session"]["id"]

    def close(_: int) -> int:
        with _client(live, key) as c:
            return c.post(f"/v1/sessions/{sid}/close").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(close, range(8)))
    assert statuses == [200] + [409] * 7


def test_many_concurrent_creates_no_database_locked(live: Live, key: str) -> None:
    def create(i: int) -> int:
        with _client(live, key) as c:
            return sum(
                c.post("/v1/sessions", json={"title": f"c{i}-{j}"}).status_code == 201
                for j in range(10)
            )

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(create, range(16))) == 160
    with _client(live, key) as c:
        total = 0
        cursor = None
        while True:
            body = c.get(
                "/v1/sessions", params={"limit": 200, **({"cursor": cursor} if cursor else {})}
            ).json()
            total += len(body["sessions"])
            cursor = body["nextCursor"]
            if not cursor:
                break
        assert total == 160
