"""Real ``sessiond serve`` processes on loopback, for restart and several-instance tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def start_server(
    data_dir: Path, database_url: str, name: str = "the-instance", **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``sessiond serve`` on ``data_dir`` as instance ``name`` (the same one when
    restarted), extra ``SESSIOND_*`` variables in ``env``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    exe = Path(sys.executable).parent / "sessiond"
    log_path = data_dir / f"server-{name}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--database-url", database_url, "--no-access-log"],
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
