"""``exec``: one command in a session's sandbox (docs/design/sandbox.md, decision 4).

The command runs confined (``Confinement``), in its own process group, with the
sandbox's HOME and a small base environment plus the caller's. stdout and stderr are
read at once and each keeps its last ``cap`` bytes (``truncated`` says when more came);
a timeout sends SIGTERM to the group, and SIGKILL ``KILL_GRACE_SECONDS`` later. The
caller saves the directory afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessiond.errors import InvalidPath
from sessiond.sandbox.confine import Confinement

KILL_GRACE_SECONDS = 2.0
# After the command exits, how long its output may still arrive (from children it left
# running with the pipes open) before the group is killed.
DRAIN_SECONDS = 1.0
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Outcome:
    exit_code: int | None
    signal: str | None
    stdout: bytes
    stderr: bytes
    truncated: bool
    timed_out: bool
    duration_ms: int

    def render(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout.decode("utf-8", errors="replace"),
            "stderr": self.stderr.decode("utf-8", errors="replace"),
            "truncated": self.truncated,
            "timedOut": self.timed_out,
            "durationMs": self.duration_ms,
        }


def working_dir(work: Path, cwd: str | None) -> Path:
    """``cwd`` (relative to the sandbox, or absolute inside it) as a directory inside
    ``work``, symlinks resolved; 422 ``invalid_path`` when it leaves or does not exist."""
    if cwd is None or cwd in ("", "."):
        return work
    if "\x00" in cwd:
        raise InvalidPath("cwd must not contain NUL")
    base = os.path.realpath(work)
    target = os.path.realpath(cwd if os.path.isabs(cwd) else os.path.join(work, cwd))
    if os.path.commonpath([target, base]) != base:
        raise InvalidPath(f"cwd {cwd!r} leaves the sandbox")
    if not os.path.isdir(target):
        raise InvalidPath(f"cwd {cwd!r} is not a directory in the sandbox")
    return Path(target)


class _Capped:
    """The last ``cap`` bytes of a stream."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.data += chunk
            if len(self.data) > self.cap:
                del self.data[: len(self.data) - self.cap]
                self.truncated = True


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run(
    confinement: Confinement,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stdin: bytes | None,
    timeout: float,
    cap: int,
) -> Outcome:
    """Run ``argv`` (already wrapped by ``Sandboxes.command``) and wait for it."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(cwd),
        start_new_session=True,
        preexec_fn=confinement.preexec(),
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = _Capped(cap), _Capped(cap)
    readers = [
        asyncio.create_task(out.pump(process.stdout)),
        asyncio.create_task(err.pump(process.stderr)),
    ]
    feeder = asyncio.create_task(_feed(process, stdin)) if stdin else None
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), timeout)
        except TimeoutError:
            timed_out = True
            _kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), KILL_GRACE_SECONDS)
            except TimeoutError:
                _kill(process.pid, signal.SIGKILL)
                await process.wait()
        _, pending = await asyncio.wait(readers, timeout=DRAIN_SECONDS)
        if pending:  # children still hold the pipes: end them
            _kill(process.pid, signal.SIGKILL)
            await asyncio.wait(pending, timeout=DRAIN_SECONDS)
    finally:
        for task in (*readers, feeder):
            if task is not None and not task.done():
                task.cancel()
        if process.returncode is None:
            _kill(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await process.wait()
    code = process.returncode
    assert code is not None
    exit_code, sig = (None, signal.Signals(-code).name) if code < 0 else (code, None)
    if confinement.confined and code > 128 and timed_out:
        # bwrap reports a child killed by a signal as 128 + the signal.
        with contextlib.suppress(ValueError):
            exit_code, sig = None, signal.Signals(code - 128).name
    return Outcome(
        exit_code=exit_code,
        signal=sig,
        stdout=bytes(out.data),
        stderr=bytes(err.data),
        truncated=out.truncated or err.truncated,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
    with contextlib.suppress(Exception):
        process.stdin.close()
