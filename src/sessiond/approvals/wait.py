"""Waiting for an approval's decision (``?wait=`` and agent permissions)."""

from __future__ import annotations

from typing import Any

from sessiond.approvals import service as approvals
from sessiond.db.executor import Database
from sessiond.events.bus import EventBus
from sessiond.events.store import EventFilter
from sessiond.events.wait import until


async def wait_for_decision(
    db: Database,
    bus: EventBus,
    account_id: str,
    session_id: str,
    approval_id: str,
    wait: float | None,
) -> dict[str, Any]:
    """The approval once it is no longer pending, or as it is when ``wait`` seconds have
    passed (``None``: no limit)."""

    async def read() -> dict[str, Any]:
        return await db.read(approvals.get, account_id, session_id, approval_id)

    return await until(
        bus,
        EventFilter(account_id, session_id=session_id, types=("approval.resolved",)),
        read,
        lambda a: a["status"] != "pending",
        lambda e: e["data"].get("approval", {}).get("id") == approval_id,
        wait,
    )
