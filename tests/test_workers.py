"""``sessiond serve --workers 2``: two real worker processes on one port, on both backends.

Which worker answers a connection is the kernel's choice (SO_REUSEPORT); each worker
names itself in ``/metrics`` (``sessiond_instance_info``), so a test finds a connection
to the worker it wants by asking on fresh connections.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessiond.db import leases
from sessiond.db.executor import Database
from tests.support.live import parse_sse
from tests.support.servers import start_server, stop_server

pytestmark = pytest.mark.slow

NAME = "wk"
INSTANCE = re.compile(r'sessiond_instance_info\{instance="([^"]+)"\}')
SUBSCRIBERS = re.compile(r"^sessiond_sse_subscribers (\S+)$", re.M)


@contextmanager
def two_workers(tmp_path: Path, database_url: str, **env: str) -> Iterator[tuple[str, str, int]]:
    """(url, admin key, supervisor pid) of a real server with two workers."""
    proc, url = start_server(tmp_path, database_url, NAME, workers=2, **env)
    try:
        key = (tmp_path / "admin.key").read_text().strip()
        yield url, key, proc.pid
    finally:
        stop_server(proc, signal.SIGTERM)


def _worker_of(client: httpx.Client) -> tuple[str, str]:
    """(instance id, metrics text) of the worker at the other end of ``client``'s connection."""
    text = client.get("/metrics").text
    found = INSTANCE.search(text)
    assert found, text[:500]
    return found.group(1), text


def _client_on(url: str, key: str, want: Any, tries: int = 200) -> httpx.Client:
    """A keep-alive client whose connection reaches a worker for which ``want(instance,
    metrics)`` holds (new connections until one does)."""
    for _ in range(tries):
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        instance, text = _worker_of(client)
        if want(instance, text):
            return client
        client.close()
    raise AssertionError("no connection reached the wanted worker")


def _both_workers_up(url: str, key: str) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only {seen} answered"
        with httpx.Client(base_url=url, timeout=10) as c:
            seen.add(_worker_of(c)[0])
    return seen


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_workers_share_the_port_and_never_lose_a_write(
    tmp_path: Path, database_url: str
) -> None:
    with two_workers(tmp_path, database_url) as (url, key, _):
        assert _both_workers_up(url, key) == {f"{NAME}/w0", f"{NAME}/w1"}
        headers = {"Authorization": f"Bearer {key}"}
        session = httpx.post(f"{url}/v1/sessions", json={}, headers=headers).json()["session"]
        failures: list[str] = []
        answered: dict[str, int] = {}

        def writer(n: int) -> None:
            # A new connection every 10 requests: the kernel spreads them over both workers.
            for batch in range(5):
                with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
                    worker = _worker_of(c)[0]
                    answered[worker] = answered.get(worker, 0) + 1
                    for i in range(10):
                        body = {
                            "role": "user",
                            "parts": [{"type": "text", "text": f"{n}.{batch}.{i}"}],
                        }
                        r = c.post(f"/v1/sessions/{session['id']}/messages", json=body)
                        if r.status_code != 201:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                        r = c.post("/v1/sessions", json={"title": f"s{n}.{batch}.{i}"})
                        if r.status_code != 201:
                            failures.append(f"{r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert failures == []
        assert set(answered) == {f"{NAME}/w0", f"{NAME}/w1"}, answered  # both wrote

        # 400 appends to one session from both processes: seq 1..400, none lost or doubled.
        seqs: list[int] = []
        cursor = None
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            while True:
                params: dict[str, Any] = {"limit": 200}
                if cursor:
                    params["cursor"] = cursor
                page = c.get(f"/v1/sessions/{session['id']}/messages", params=params).json()
                seqs += [m["seq"] for m in page["messages"]]
                cursor = page.get("nextCursor")
                if not cursor:
                    break
            assert sorted(seqs) == list(range(1, 401))
            texts = {
                m["parts"][0]["text"]
                for m in c.get(
                    f"/v1/sessions/{session['id']}/messages", params={"limit": 200}
                ).json()["messages"]
            }
            assert len(texts) == 200
        # The 400 sessions too, through either worker.
        listed = 0
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            cursor = None
            while True:
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                page = c.get("/v1/sessions", params=params).json()
                listed += len(page["sessions"])
                cursor = page.get("nextCursor")
                if not cursor:
                    break
        assert listed == 401
        log = "".join(p.read_text(errors="replace") for p in tmp_path.glob("server-*.log"))
        assert "database is locked" not in log


def test_events_written_on_one_worker_stream_from_the_other(
    tmp_path: Path, database_url: str
) -> None:
    with two_workers(tmp_path, database_url) as (url, key, _):
        _both_workers_up(url, key)
        headers = {"Authorization": f"Bearer {key}"}
        session_id = httpx.post(f"{url}/v1/sessions", json={}, headers=headers).json()["session"][
            "id"
        ]
        received: list[tuple[dict[str, Any], float]] = []
        ready = threading.Event()
        n = 60

        def listen() -> None:
            with httpx.stream(
                "GET",
                f"{url}/v1/sessions/{session_id}/events/stream",
                headers={**headers, "Last-Event-ID": "0"},
                timeout=30,
            ) as r:
                assert r.status_code == 200
                ready.set()
                for item in parse_sse(r.iter_lines()):
                    if item.get("event") != "message.created":
                        continue
                    received.append((item, time.monotonic()))
                    if len(received) == n:
                        return

        th = threading.Thread(target=listen)
        th.start()
        assert ready.wait(10)

        def serving_stream(instance: str, text: str) -> bool:
            found = SUBSCRIBERS.search(text)
            return bool(found and float(found.group(1)) >= 1)

        streamer = _client_on(url, key, serving_stream)
        stream_worker = _worker_of(streamer)[0]
        streamer.close()
        writer = _client_on(url, key, lambda instance, _: instance != stream_worker)
        sent: list[float] = []
        try:
            for i in range(n):
                body = {"role": "user", "parts": [{"type": "text", "text": f"m{i}"}]}
                sent.append(time.monotonic())
                assert (
                    writer.post(f"/v1/sessions/{session_id}/messages", json=body).status_code == 201
                )
                time.sleep(0.01)
        finally:
            writer.close()
        th.join(timeout=30)
        assert len(received) == n, len(received)
        ids = [int(item["id"]) for item, _ in received]
        assert ids == sorted(ids) and len(set(ids)) == n  # in order, no duplicate
        lags = sorted(at - sent[i] for i, (_, at) in enumerate(received))
        p99 = lags[int(len(lags) * 0.99) - 1]
        print(f"cross-worker delivery: p50 {statistics.median(lags) * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms")  # fmt: skip
        assert p99 < 1.0  # the bench measures it; here: far from the 1 s safety-net poll


def test_a_killed_worker_comes_back_and_the_supervisor_takes_them_all_down(
    tmp_path: Path, database_url: str
) -> None:
    with two_workers(tmp_path, database_url) as (url, key, supervisor):
        _both_workers_up(url, key)
        workers = _children(supervisor)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:  # the other worker serves meanwhile; the killed one is replaced
            r = httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert r.status_code == 200
            now = _children(supervisor)
            if len(now) == 2 and workers[0] not in now:
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.2)
        assert _both_workers_up(url, key) == {f"{NAME}/w0", f"{NAME}/w1"}
        survivors = _children(supervisor)
        os.kill(supervisor, signal.SIGKILL)  # the workers die with it (PR_SET_PDEATHSIG)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in survivors):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_one_worker_runs_the_sweeper_and_expiry_still_happens(
    tmp_path: Path, database_url: str
) -> None:
    env = {"SESSIOND_SWEEP_INTERVAL_SECONDS": "0.2"}
    with two_workers(tmp_path, database_url, **env) as (url, key, _):
        _both_workers_up(url, key)
        headers = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"{url}/v1/sessions", json={"ttlSeconds": 1}, headers=headers)
        assert r.status_code == 201, r.text
        session_id = r.json()["session"]["id"]
        db = Database(database_url)
        db.start()
        try:
            owners = set()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                held = db.read_sync(leases.holder, "sweeper")
                if held:
                    owners.add(held[0])
                time.sleep(0.1)
            assert len(owners) == 1 and owners <= {f"{NAME}/w0", f"{NAME}/w1"}, owners
        finally:
            db.close()
        # The expiry was the sweeper's (an event), not only a read-time view.
        with httpx.stream(
            "GET",
            f"{url}/v1/sessions/{session_id}/events/stream",
            headers={**headers, "Last-Event-ID": "0"},
            timeout=10,
        ) as stream:
            for item in parse_sse(stream.iter_lines()):
                if item.get("event") == "session.status":
                    assert json.loads(item["data"])["data"]["to"] == "expired"
                    break


def test_a_job_lease_has_one_holder_until_it_lapses(database_url: str) -> None:
    now = [1_000_000]
    db = Database(database_url, clock=lambda: now[0])
    db.start()
    try:
        assert db.write_sync(leases.claim, "job", "a", 30)
        assert not db.write_sync(leases.claim, "job", "b", 30)  # a holds it
        now[0] += 20_000
        assert db.write_sync(leases.claim, "job", "a", 30)  # renewed: until now + 30 s
        now[0] += 20_000
        assert not db.write_sync(leases.claim, "job", "b", 30)  # still a's (renewed)
        assert db.write_sync(leases.holder, "job") == ("a", 1_040_000 - 20_000 + 30_000)
        now[0] += 11_000  # a stopped renewing: lapsed
        assert db.write_sync(leases.claim, "job", "b", 30)
        assert not db.write_sync(leases.claim, "job", "a", 30)
        assert db.write_sync(leases.claim, "other", "a", 30)  # jobs are independent
        db.write_sync(leases.release, "job", "a")  # not a's: nothing happens
        assert db.write_sync(leases.holder, "job") is not None
        db.write_sync(leases.release, "job", "b")
        assert db.write_sync(leases.claim, "job", "a", 30)  # free at once
    finally:
        db.close()
