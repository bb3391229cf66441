"""The access log: one JSON line per request, written in batches.

Going through ``logging`` for every request (a LogRecord, a formatter, a locked unbuffered
write) cost about a third of a GET. Lines are appended to a list (atomic under the GIL)
and written to the stream by the event loop a few times a second and at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TextIO


class AccessLog:
    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.2) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._lines: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def write(self, line: str) -> None:
        self._lines.append(line)

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream must not fail requests
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
