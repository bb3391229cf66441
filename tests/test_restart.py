"""SSE resume across a restart of a real ``sessiond serve`` process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.live import parse_sse
from tests.support.servers import WORKERS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(data_dir: Path, database_url: str) -> Iterator[str]:
    """Run ``sessiond serve`` until the block ends; yields its base URL."""
    port = _free_port()
    exe = Path(sys.executable).parent / "sessiond"
    log = open(data_dir / f"server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--database-url", database_url, "--no-access-log", "--workers", WORKERS],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "SESSIOND_HEARTBEAT_SECONDS": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (data_dir / f"server-{port}.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _read(url: str, key: str, n: int, last_event_id: str | None = None) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    out: list[dict[str, str]] = []
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10)) as r:
        assert r.status_code == 200
        for item in parse_sse(r.iter_lines()):
            if "comment" in item:
                continue
            out.append(item)
            if len(out) == n:
                break
    return out


def test_resume_after_server_restart(tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path, database_url) as url:
        key = (tmp_path / "admin.key").read_text().strip()
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"})
        sid = c.post("/v1/sessions").json()["session"]["id"]
        for i in range(3):
            c.post(f"/v1/sessions/{sid}/events", json={"type": "custom.before", "data": {"i": i}})
        stream = f"{url}/v1/sessions/{sid}/events/stream?after=0"
        first = _read(stream, key, 4)
        assert [e["event"] for e in first] == ["session.created"] + ["custom.before"] * 3
        last_seen = first[-1]["id"]
        # Written after the client went away, before the restart.
        c.post(f"/v1/sessions/{sid}/events", json={"type": "custom.missed", "data": {"i": 0}})
        c.close()

    with serve(tmp_path, database_url) as url:
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"})
        # The key file is not rewritten on a second start: the same key still works.
        assert c.get("/v1/me").status_code == 200
        c.post(f"/v1/sessions/{sid}/events", json={"type": "custom.after", "data": {"i": 1}})
        stream = f"{url}/v1/sessions/{sid}/events/stream"
        resumed = _read(stream, key, 2, last_event_id=last_seen)
        assert [e["event"] for e in resumed] == ["custom.missed", "custom.after"]
        ids = [int(e["id"]) for e in first + resumed]
        assert ids == sorted(set(ids)), "a duplicate or out-of-order id across the restart"
        assert json.loads(resumed[0]["data"])["data"] == {"i": 0}
        c.close()
