"""Waiting for a turn to end (``GET .../turns/{id}?wait=``)."""

from __future__ import annotations

import asyncio
from typing import Any

from sessiond.agents import turns
from sessiond.db.executor import Database
from sessiond.events.bus import EventBus
from sessiond.events.store import EventFilter

ENDED_EVENTS = tuple(f"turn.{s}" for s in turns.ENDED)


async def until_ended(
    db: Database, bus: EventBus, account_id: str, session_id: str, turn_id: str, wait: float
) -> dict[str, Any]:
    """The turn once it ended, or as it is after ``wait`` seconds. The subscription opens
    before the first read, so an end committed in between is not missed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    sub = bus.subscribe(EventFilter(account_id, session_id=session_id, types=ENDED_EVENTS))
    try:
        while True:
            turn = await db.read(turns.get, account_id, session_id, turn_id)
            if turn["status"] in turns.ENDED or bus.closed:
                return turn
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return turn
                try:
                    async with asyncio.timeout(remaining):
                        item = await sub.get()
                except TimeoutError:
                    return await db.read(turns.get, account_id, session_id, turn_id)
                if not isinstance(item, dict) or bus.closed:
                    break
                if item["data"].get("turn", {}).get("id") == turn_id:
                    break
    finally:
        sub.close()
