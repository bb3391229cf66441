"""``GET /v1/sessions``: filters and keyset pagination (same cost at row 10 and 1,000,000)."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import invalid
from sessiond.ids import parse_iso
from sessiond.pagination import keyset
from sessiond.sessions.lifecycle import STATUSES
from sessiond.sessions.render import splice

SORTS = {"lastActivityAt": "last_activity_at", "createdAt": "created_at"}


@dataclass
class SessionFilters:
    workspace_id: str | None = None
    statuses: list[str] | None = None  # None: every status but archived
    tags: list[str] = field(default_factory=list)
    parent_id: str | None = None
    q: str | None = None
    updated_after: str | None = None
    sort: str = "lastActivityAt"
    order: str = "desc"


def parse_statuses(value: str | None) -> list[str] | None:
    if value is None or value == "":
        return None
    items = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in items if s not in STATUSES]
    if bad:
        raise invalid("status", f"unknown status {', '.join(bad)}; one of {', '.join(STATUSES)}")
    return items


def _status_clause(status: str, now: int) -> sa.ColumnElement[bool]:
    """Filter on the status a reader sees (TTL applied at read time)."""
    c = t.sessions.c
    ttl_passed = sa.and_(c.status == "active", c.expires_at.is_not(None), c.expires_at <= now)
    if status == "active":
        return sa.and_(c.status == "active", sa.or_(c.expires_at.is_(None), c.expires_at > now))
    if status == "expired":
        return sa.or_(c.status == "expired", ttl_passed)
    return c.status == status


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_sessions(
    tx: Tx, account_id: str, f: SessionFilters, *, limit: int, cursor: str | None
) -> tuple[list[str], str | None]:
    """A page of sessions as JSON texts (see ``render.splice``) and the next cursor."""
    if f.sort not in SORTS:
        raise invalid("sort", "must be lastActivityAt or createdAt")
    if f.order not in ("asc", "desc"):
        raise invalid("order", "must be asc or desc")
    c = t.sessions.c
    sort_col = c[SORTS[f.sort]]
    q = sa.select(
        c.id,
        c[SORTS[f.sort]],
        c.doc,
        sa.cast(c.context, sa.Text).label("context_text"),
        c.status,
        c.expires_at,
        c.lifecycle_version,
        c.message_count,
        c.last_activity_at,
    ).where(c.account_id == account_id, c.deleted_at.is_(None))
    if f.workspace_id is not None:
        q = q.where(c.workspace_id == f.workspace_id)
    if f.statuses is None:
        q = q.where(c.status != "archived")
    else:
        q = q.where(sa.or_(*[_status_clause(s, tx.now) for s in f.statuses]))
    for tag in f.tags:
        q = q.where(
            sa.exists().where(
                t.session_tags.c.session_id == c.id,
                t.session_tags.c.account_id == account_id,
                t.session_tags.c.tag == tag,
            )
        )
    if f.parent_id is not None:
        q = q.where(c.parent_id == f.parent_id)
    if f.q:
        q = q.where(sa.func.lower(c.title).like(f"%{_like_escape(f.q.lower())}%", escape="\\"))
    if f.updated_after:
        try:
            q = q.where(c.updated_at > parse_iso(f.updated_after))
        except ValueError:
            raise invalid("updatedAfter", "must be an ISO 8601 timestamp") from None
    kind = f"sessions:{f.sort}:{f.order}"
    rows, next_cursor = keyset(
        tx, q, (sort_col, c.id), kind, limit=limit, cursor=cursor, descending=f.order == "desc"
    )
    now = tx.now
    return [splice(r["doc"], r["context_text"], r, now) for r in rows], next_cursor
