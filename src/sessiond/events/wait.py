"""Waiting for a row to reach a state, woken by its events (long polls, agents)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sessiond.events.bus import EventBus
from sessiond.events.store import EventFilter


async def until(
    bus: EventBus,
    f: EventFilter,
    read: Callable[[], Awaitable[dict[str, Any]]],
    done: Callable[[dict[str, Any]], bool],
    concerns: Callable[[dict[str, Any]], bool],
    wait: float | None,
) -> dict[str, Any]:
    """``read()`` once ``done`` holds for it, or as it is after ``wait`` seconds (None: no
    limit). Re-read on every event of ``f`` that ``concerns`` it (and on a lag marker).

    The subscription opens before the first read, so a change committed in between is
    seen either by the read or as an event. Events come from the bus, which sees commits
    of every instance (PostgreSQL NOTIFY, plus its periodic poll).
    """
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    sub = bus.subscribe(f)
    try:
        while True:
            row = await read()
            if done(row) or bus.closed:
                return row
            while True:  # until an event about this row (or a lag marker) arrives
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return row
                try:
                    async with asyncio.timeout(remaining):  # (not wait_for: see events.bus)
                        item = await sub.get()
                except TimeoutError:
                    return await read()  # one last look: it may have changed just now
                if not isinstance(item, dict) or bus.closed or concerns(item):
                    break
    finally:
        sub.close()
