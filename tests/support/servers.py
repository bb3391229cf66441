"""Real ``sessiond serve`` processes on loopback, for restart and several-instance tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# Worker processes of every real server the suite starts (``serve --workers``): two, as
# on a 2-core machine by default, so every real-server test crosses workers.
WORKERS = os.environ.get("SESSIOND_TEST_WORKERS", "2")


def start_server(
    data_dir: Path,
    database_url: str,
    name: str = "the-instance",
    *,
    workers: int | None = None,
    **env: str,
) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``sessiond serve`` on ``data_dir`` as instance ``name`` (the same one when
    restarted) with ``workers`` processes (default ``WORKERS``), extra ``SESSIOND_*``
    variables in ``env``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    exe = Path(sys.executable).parent / "sessiond"
    log_path = data_dir / f"server-{name}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--database-url", database_url, "--no-access-log",
         "--workers", str(workers or WORKERS)],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "SESSIOND_INSTANCE_ID": name, **env},
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen[bytes], sig: int) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sandbox_work(data_dir: Path, session_id: str) -> Path | None:
    """The session's sandbox working directory on this data dir, whichever worker hosts
    it (``sandboxes/w<k>/<id>/work``; ``sandboxes/<id>/work`` for a single process)."""
    found = [*data_dir.glob(f"sandboxes/w*/{session_id}/work")]
    single = data_dir / "sandboxes" / session_id / "work"
    if single.is_dir():
        found.append(single)
    assert len(found) <= 1, found  # one host at a time
    return found[0] if found else None
