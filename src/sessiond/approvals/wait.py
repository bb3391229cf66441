"""Waiting for an approval's decision (``?wait=`` and agent permissions)."""

from __future__ import annotations

import asyncio
from typing import Any

from sessiond.approvals import service as approvals
from sessiond.db.executor import Database
from sessiond.events.bus import EventBus
from sessiond.events.store import EventFilter

RESOLVED = ("approval.resolved", "approval.cancelled")


async def wait_for_decision(
    db: Database,
    bus: EventBus,
    account_id: str,
    session_id: str,
    approval_id: str,
    wait: float | None,
) -> dict[str, Any]:
    """The approval once it is no longer pending, or as it is when ``wait`` seconds have
    passed (``None``: no limit).

    The subscription opens before the first read, so a decision committed in between is
    seen either by the read or as an event. Events come from the bus, which sees commits
    of every instance (PostgreSQL NOTIFY, plus its periodic poll).
    """
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    f = EventFilter(account_id, session_id=session_id, types=RESOLVED)
    sub = bus.subscribe(f)
    try:
        while True:
            approval = await db.read(approvals.get, account_id, session_id, approval_id)
            if approval["status"] != "pending" or bus.closed:
                return approval
            while True:  # until an event for this approval (or a lag marker) arrives
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return approval
                try:
                    async with asyncio.timeout(remaining):  # (not wait_for: see events.bus)
                        item = await sub.get()
                except TimeoutError:
                    # One last look: a decision may have committed just now.
                    return await db.read(approvals.get, account_id, session_id, approval_id)
                if not isinstance(item, dict) or bus.closed:
                    break  # lagged (or shutting down): re-read
                if item["data"].get("approval", {}).get("id") == approval_id:
                    break
    finally:
        sub.close()
