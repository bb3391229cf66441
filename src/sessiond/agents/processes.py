"""Stopping child processes (agents, terminal commands) and everything they started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


async def stop_process(process: asyncio.subprocess.Process, grace: float = 2.0) -> None:
    """Close stdin, wait ``grace``; TERM the process group, wait; KILL it."""
    if process.stdin is not None:
        with contextlib.suppress(Exception):
            process.stdin.close()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            break
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    # Children the agent left behind in its group (a shell, a server it started).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    close_transport(process)


def close_transport(process: asyncio.subprocess.Process) -> None:
    """Close the pipes' transport now (asyncio leaves it to the garbage collector, which
    warns when that happens after the loop closed)."""
    transport = getattr(process, "_transport", None)
    if transport is not None:
        transport.close()
