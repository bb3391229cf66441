"""Event reads scoped to what the caller may see."""

from __future__ import annotations

from typing import Any

from sessiond.db.executor import Tx
from sessiond.events.store import EventFilter, list_events
from sessiond.sessions import kernel
from sessiond.workspaces import service as workspaces


def check_scope(tx: Tx, f: EventFilter) -> None:
    """404 when the filter names a session or workspace the account does not have."""
    if f.session_id is not None:
        kernel.get_row(tx, f.account_id, f.session_id)
    if f.workspace_id is not None:
        workspaces.require(tx, f.account_id, f.workspace_id)


def page(tx: Tx, f: EventFilter, *, after: int, limit: int) -> list[dict[str, Any]]:
    check_scope(tx, f)
    return list_events(tx, f, after=after, limit=limit)
