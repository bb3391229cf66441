"""``terminal/*``: commands an agent runs in its sandbox directory.

Each terminal is a process in its own process group, confined like ``exec`` and started
in the directory (or a ``cwd`` inside it), with a timeout after which the group is killed,
and an output cap: stdout and stderr together, the last ``limit`` bytes kept (ACP
truncates from the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from typing import Any

from sessiond.agents.processes import close_transport
from sessiond.agents.protocol import ClientRefused
from sessiond.errors import InvalidPath
from sessiond.sandbox.exec import working_dir
from sessiond.sandbox.manager import Layout, Sandboxes


class Terminal:
    def __init__(self, process: asyncio.subprocess.Process, limit: int, timeout: float) -> None:
        self.process = process
        self.limit = limit
        self.output = bytearray()
        self.truncated = False
        self.timed_out = False
        self.reader = asyncio.create_task(self._read())
        self.timer = asyncio.get_running_loop().call_later(timeout, self._timeout)

    async def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while chunk := await stream.read(65536):
            self.output += chunk
            if len(self.output) > self.limit:
                del self.output[: len(self.output) - self.limit]
                self.truncated = True

    def _timeout(self) -> None:
        self.timed_out = True
        self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def exit_status(self) -> dict[str, Any] | None:
        code = self.process.returncode
        if code is None:
            return None
        if code < 0:
            return {"exitCode": None, "signal": signal.Signals(-code).name}
        return {"exitCode": code, "signal": None}

    async def wait(self) -> dict[str, Any]:
        await self.process.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.reader, 5)
        self.timer.cancel()
        close_transport(self.process)
        status = self.exit_status()
        assert status is not None
        return status


class Terminals:
    """The terminals of one agent connection."""

    def __init__(
        self,
        sandboxes: Sandboxes,
        layout: Layout,
        env: dict[str, str],
        limit: int,
        timeout: float,
    ) -> None:
        self.sandboxes = sandboxes
        self.layout = layout
        self.root = layout.work
        self.env = env
        self.limit = limit
        self.timeout = timeout
        self.open: dict[str, Terminal] = {}

    def _get(self, terminal_id: str) -> Terminal:
        term = self.open.get(terminal_id)
        if term is None:
            raise ClientRefused(f"no terminal {terminal_id}")
        return term

    async def create(
        self,
        command: str,
        args: list[str],
        env: dict[str, str],
        cwd: str | None,
        output_byte_limit: int | None,
    ) -> str:
        try:
            directory = working_dir(self.root, cwd)
        except InvalidPath as e:
            raise ClientRefused(e.message) from None
        limit = min(output_byte_limit or self.limit, self.limit)
        argv = self.sandboxes.command(self.layout, [command, *args], readable=[], cwd=directory)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=directory,
                env={**self.env, **env},
                start_new_session=True,
                preexec_fn=self.sandboxes.confinement.preexec(),
            )
        except OSError as e:
            raise ClientRefused(f"{command}: {e.strerror or e}") from None
        terminal_id = f"term_{uuid.uuid4().hex[:16]}"
        self.open[terminal_id] = Terminal(process, limit, self.timeout)
        return terminal_id

    def output(self, terminal_id: str) -> dict[str, Any]:
        term = self._get(terminal_id)
        out: dict[str, Any] = {
            "output": term.output.decode("utf-8", "replace"),
            "truncated": term.truncated,
        }
        status = term.exit_status()
        if status is not None:
            out["exitStatus"] = status
        return out

    async def wait(self, terminal_id: str) -> dict[str, Any]:
        return await self._get(terminal_id).wait()

    def kill(self, terminal_id: str) -> None:
        self._get(terminal_id).kill()

    async def release(self, terminal_id: str) -> None:
        term = self.open.pop(terminal_id, None)
        if term is not None:
            term.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(term.wait(), 5)

    async def close(self) -> None:
        for terminal_id in list(self.open):
            await self.release(terminal_id)
