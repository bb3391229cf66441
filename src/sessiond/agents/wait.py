"""Waiting for a turn to end (``GET .../turns/{id}?wait=``)."""

from __future__ import annotations

from typing import Any

from sessiond.agents import turns
from sessiond.db.executor import Database
from sessiond.events.bus import EventBus
from sessiond.events.store import EventFilter
from sessiond.events.wait import until

ENDED_EVENTS = tuple(f"turn.{s}" for s in turns.ENDED)


async def until_ended(
    db: Database, bus: EventBus, account_id: str, session_id: str, turn_id: str, wait: float
) -> dict[str, Any]:
    """The turn once it ended, or as it is after ``wait`` seconds."""

    async def read() -> dict[str, Any]:
        return await db.read(turns.get, account_id, session_id, turn_id)

    return await until(
        bus,
        EventFilter(account_id, session_id=session_id, types=ENDED_EVENTS),
        read,
        lambda turn: turn["status"] in turns.ENDED,
        lambda e: e["data"].get("turn", {}).get("id") == turn_id,
        wait,
    )
