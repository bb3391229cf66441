"""Reading stored events. Ids are allocated in commit order, so ``id > after`` never skips."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import invalid
from sessiond.ids import iso
from sessiond.sessions import kernel

# A deleted session's events stay until its purge, hidden from every reader; this one
# stays for good (account-wide streams see the deletion).
DELETED = "session.deleted"


@dataclass(frozen=True)
class EventFilter:
    """Which events a reader wants. ``types`` are exact types or prefixes ending in ``.``."""

    account_id: str
    session_id: str | None = None
    workspace_id: str | None = None
    types: tuple[str, ...] = ()

    def matches(self, event: Mapping[str, Any]) -> bool:
        if event["account_id"] != self.account_id:
            return False
        if self.session_id is not None and event["session_id"] != self.session_id:
            return False
        if self.workspace_id is not None and event["workspace_id"] != self.workspace_id:
            return False
        return not self.types or any(_type_matches(p, event["type"]) for p in self.types)


def _type_matches(pattern: str, type_: str) -> bool:
    if pattern.endswith(".") or pattern.endswith("*"):
        return type_.startswith(pattern.rstrip("*"))
    return type_ == pattern


def parse_types(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    items = tuple(p.strip() for p in value.split(",") if p.strip())
    for p in items:
        if len(p) > 100:
            raise invalid("types", "each type or prefix is at most 100 characters")
    return items


def render_event(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": row["type"],
        "sessionId": row["session_id"],
        "workspaceId": row["workspace_id"],
        "data": row["data"],
        "createdAt": iso(row["created_at"]),
    }


def list_events(tx: Tx, f: EventFilter, *, after: int, limit: int) -> list[dict[str, Any]]:
    """Stored events matching ``f`` with ``id > after``, oldest first (raw rows)."""
    c = t.events.c
    q = sa.select(t.events).where(c.account_id == f.account_id, c.id > after)
    if f.session_id is not None:
        q = q.where(c.session_id == f.session_id)
    else:  # (a session's own stream 404s once it is deleted: check_scope)
        q = q.where(sa.or_(c.type == DELETED, kernel.shown(c.session_id, f.account_id)))
    if f.workspace_id is not None:
        q = q.where(c.workspace_id == f.workspace_id)
    if f.types:
        clauses = []
        for p in f.types:
            if p.endswith(".") or p.endswith("*"):
                prefix = p.rstrip("*")
                clauses.append(sa.func.substr(c.type, 1, len(prefix)) == prefix)
            else:
                clauses.append(c.type == p)
        q = q.where(sa.or_(*clauses))
    rows = tx.conn.execute(q.order_by(c.id).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


def fetch_after(tx: Tx, after: int, limit: int) -> list[dict[str, Any]]:
    """Every account's events after ``after`` (the bus pump's feed)."""
    rows = tx.conn.execute(
        sa.select(t.events).where(t.events.c.id > after).order_by(t.events.c.id).limit(limit)
    ).all()
    return [dict(r._mapping) for r in rows]


def max_id(tx: Tx) -> int:
    return int(
        tx.conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.events.c.id), 0))).scalar_one()
    )
