"""The session row kernel: what every service that owns session rows builds on.

Read a session (404 when it is another account's or missing), lock it for a write
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer), bring a passed TTL into the row,
check the client's precondition (``If-Match`` → 412, ``expectedVersion`` → 409), require
it ``active`` (409 ``session_not_active``), write its fields (``doc`` re-rendered),
record activity (``touch``), emit an event of its stream, and fetch one session-owned row
or 404. Everything runs in the caller's transaction. This module imports no other domain
folder (docs/design/layout.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import (
    NotFound,
    PreconditionFailed,
    SessiondError,
    SessionNotActive,
    VersionConflict,
)
from sessiond.sessions import lifecycle
from sessiond.sessions.render import session_doc, splice


def not_found(session_id: str) -> NotFound:
    return NotFound(f"session {session_id} not found")


def not_active(row: dict[str, Any], status: str) -> SessionNotActive:
    hint = {
        "archived": 'unarchive it with PATCH {"status": "active"} first',
        "expired": "it expired at its expiresAt; fork it or create a new session to continue",
    }.get(status, "fork it or create a new session to continue")
    return SessionNotActive(
        f"session {row['id']} is {status} and accepts no writes; {hint}",
        details={"status": status},
    )


# -- deleted sessions ----------------------------------------------------------------------

# A session marked deleted (``deleted_at`` set by DELETE) is gone at once for every read
# and write that finds it here; its rows stay until the sweeper purges them
# (sessions/purge.py, docs/design/deletion.md).
LIVE = t.sessions.c.deleted_at.is_(None)


def deleted_ids(account_id: Any) -> sa.Select[tuple[str]]:
    """The account's sessions marked deleted and not purged yet (a few at most: the purge
    takes them within a sweep; found through the ``deleted_at`` index)."""
    s = t.sessions.c
    return sa.select(s.id).where(s.account_id == account_id, s.deleted_at.is_not(None))


def shown(column: sa.ColumnElement[Any], account_id: Any) -> sa.ColumnElement[bool]:
    """``column`` (a session id, or NULL) names no deleted session of the account: what a
    list across sessions (notes, approvals, events, ...) adds to its query."""
    return sa.or_(column.is_(None), column.not_in(deleted_ids(account_id)))


def alive(session_id: sa.ColumnElement[Any]) -> sa.Exists:
    """The session ``session_id`` (a column) is not deleted: for a read that finds a
    session-owned row without reading the session first (one query, a primary-key probe)."""
    return sa.exists().where(t.sessions.c.id == session_id, LIVE)


# -- reads ---------------------------------------------------------------------------------


def get_row(tx: Tx, account_id: str, session_id: str) -> dict[str, Any]:
    row = tx.conn.execute(
        sa.select(t.sessions).where(
            t.sessions.c.id == session_id, t.sessions.c.account_id == account_id, LIVE
        )
    ).first()
    if row is None:
        raise not_found(session_id)
    return dict(row._mapping)


# Built once: the hot read path skips statement construction and cache-key generation.
_GET_TEXT = sa.select(
    t.sessions.c.doc,
    sa.cast(t.sessions.c.context, sa.Text).label("context_text"),
    t.sessions.c.status,
    t.sessions.c.expires_at,
    t.sessions.c.lifecycle_version,
    t.sessions.c.message_count,
    t.sessions.c.last_activity_at,
).where(
    t.sessions.c.id == sa.bindparam("session_id"),
    t.sessions.c.account_id == sa.bindparam("account_id"),
    LIVE,
)


def get_text(tx: Tx, account_id: str, session_id: str) -> tuple[int, str]:
    """``(lifecycleVersion as read, session object as JSON text)`` — GET's fast path."""
    row = tx.conn.execute(_GET_TEXT, {"session_id": session_id, "account_id": account_id}).first()
    if row is None:
        raise not_found(session_id)
    m = row._mapping
    version = m["lifecycle_version"] + (1 if lifecycle.is_expired(m, tx.now) else 0)
    return version, splice(m["doc"], m["context_text"], m, tx.now)


_EXISTS = sa.select(t.sessions.c.id).where(
    t.sessions.c.id == sa.bindparam("session_id"),
    t.sessions.c.account_id == sa.bindparam("account_id"),
    LIVE,
)


def require_exists(tx: Tx, account_id: str, session_id: str) -> None:
    """404 unless the account has this session (reads of session-scoped resources)."""
    found = tx.conn.execute(_EXISTS, {"session_id": session_id, "account_id": account_id})
    if found.first() is None:
        raise not_found(session_id)


_WORKSPACE = sa.select(t.sessions.c.workspace).where(
    t.sessions.c.id == sa.bindparam("session_id"),
    t.sessions.c.account_id == sa.bindparam("account_id"),
    LIVE,
)


def get_workspace(tx: Tx, account_id: str, session_id: str) -> dict[str, Any]:
    """The session's ``workspace`` object alone (404 like ``get_row``)."""
    found = tx.conn.execute(_WORKSPACE, {"session_id": session_id, "account_id": account_id})
    row = found.first()
    if row is None:
        raise not_found(session_id)
    return row[0]  # type: ignore[no-any-return]


def get_context(tx: Tx, account_id: str, session_id: str) -> dict[str, Any]:
    return get_row(tx, account_id, session_id)["context"]  # type: ignore[no-any-return]


# -- write helpers -------------------------------------------------------------------------


def check_version(
    version: int, *, if_match: int | str | None, expected_version: int | None
) -> None:
    """``if_match``: an int, ``"*"`` (anything), ``""`` (unparseable: never matches)."""
    if if_match is not None and if_match != "*" and if_match != version:
        raise PreconditionFailed(
            f'If-Match does not match the current ETag "{version}"; re-read and retry',
            details={"currentVersion": version},
        )
    if expected_version is not None and expected_version != version:
        raise VersionConflict(
            f"expectedVersion {expected_version} does not match lifecycleVersion {version}; "
            "re-read the session and retry",
            details={"currentVersion": version},
        )


_LOCK_ROW = (
    sa.select(t.sessions)
    .where(
        t.sessions.c.id == sa.bindparam("session_id"),
        t.sessions.c.account_id == sa.bindparam("account_id"),
        LIVE,
    )
    .with_for_update()
)


def load_for_write(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    if_match: int | str | None = None,
    expected_version: int | None = None,
) -> dict[str, Any]:
    """Lock the row, bring a passed TTL into the row, check the client's precondition."""
    row = tx.conn.execute(_LOCK_ROW, {"session_id": session_id, "account_id": account_id}).first()
    if row is None:
        raise not_found(session_id)
    data = dict(row._mapping)
    if lifecycle.is_expired(data, tx.now):
        expire(tx, data)
    check_version(data["lifecycle_version"], if_match=if_match, expected_version=expected_version)
    return data


_LOCK_LIGHT = (
    sa.select(
        t.sessions.c.id,
        t.sessions.c.account_id,
        t.sessions.c.workspace_id,
        t.sessions.c.status,
        t.sessions.c.expires_at,
        t.sessions.c.lifecycle_version,
        t.sessions.c.conversation,
        t.sessions.c.message_count,
    )
    .where(
        t.sessions.c.id == sa.bindparam("session_id"),
        t.sessions.c.account_id == sa.bindparam("account_id"),
        LIVE,
    )
    .with_for_update()
)


def lock_light(
    tx: Tx, account_id: str, session_id: str, *, if_match: int | str | None = None
) -> dict[str, Any]:
    """``load_for_write`` for writes that change only columns outside ``doc`` (``touch``):
    locks the row but reads only the few columns those writes need. Never pass its result
    to ``write_fields``."""
    found = tx.conn.execute(
        _LOCK_LIGHT, {"session_id": session_id, "account_id": account_id}
    ).first()
    if found is None:
        raise not_found(session_id)
    row = dict(found._mapping)
    if lifecycle.is_expired(row, tx.now):  # rare: materialize the expiry on the full row
        return load_for_write(tx, account_id, session_id, if_match=if_match)
    check_version(row["lifecycle_version"], if_match=if_match, expected_version=None)
    return row


def require_active(row: dict[str, Any]) -> None:
    if row["status"] != "active":
        raise not_active(row, row["status"])


def lock_active(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    if_match: int | str | None = None,
    full: bool = False,
) -> dict[str, Any]:
    """Lock the session for a write that needs it ``active`` (404, 412 and 409 as the
    kernel's other writes). ``full``: the whole row (``load_for_write``, for writes that
    ``write_fields``), else the few columns ``touch`` and ``emit`` need (``lock_light``)."""
    if full:
        row = load_for_write(tx, account_id, session_id, if_match=if_match)
    else:
        row = lock_light(tx, account_id, session_id, if_match=if_match)
    require_active(row)
    return row


def fetch_one(
    tx: Tx,
    table: sa.Table,
    account_id: str,
    session_id: str,
    row_id: str,
    missing: Callable[[str], SessiondError],
    *,
    lock: bool = False,
) -> dict[str, Any]:
    """The row ``row_id`` of a session-owned ``table`` (columns ``id``, ``account_id``,
    ``session_id``), or ``missing(row_id)`` raised (a 404: another account's or another
    session's row is not found, like one that never existed)."""
    q = sa.select(table).where(
        table.c.id == row_id, table.c.session_id == session_id, table.c.account_id == account_id
    )
    found = tx.conn.execute(q.with_for_update() if lock else q).first()
    if found is None:
        raise missing(row_id)
    return dict(found._mapping)


def write_fields(tx: Tx, row: dict[str, Any], values: dict[str, Any]) -> None:
    """The one way to UPDATE a session row: it also rewrites ``doc`` from the new values
    (unless only columns outside ``doc`` change; see ``touch`` for the hot path)."""
    row.update(values)
    if _UNRENDERED.issuperset(values):
        tx.conn.execute(t.sessions.update().where(t.sessions.c.id == row["id"]).values(**values))
        return
    row["doc"] = session_doc(row)
    tx.conn.execute(
        t.sessions.update().where(t.sessions.c.id == row["id"]).values(**values, doc=row["doc"])
    )


# Columns that are not part of ``doc``: writing them needs no re-render.
_UNRENDERED = frozenset(
    {
        "conversation",
        "message_count",
        "last_activity_at",
        "summary_due",
        "revert_undo",
        "commit_head",
        "environment_spec",
    }
)
_TOUCH = (
    t.sessions.update()
    .where(t.sessions.c.id == sa.bindparam("_id"))
    .values(
        conversation=sa.bindparam("conversation"),
        message_count=sa.bindparam("message_count"),
        last_activity_at=sa.bindparam("last_activity_at"),
    )
)
_TOUCH_ACTIVITY = (
    t.sessions.update()
    .where(t.sessions.c.id == sa.bindparam("_id"))
    .values(last_activity_at=sa.bindparam("last_activity_at"))
)


def touch(tx: Tx, row: dict[str, Any], *, conversation: Any = None, message_count: int = 0) -> None:
    """Record activity (and, if given, a new conversation path with its message count)
    without rewriting ``doc``: the hot path of appends and other session-scoped writes."""
    row["last_activity_at"] = tx.now
    if conversation is None:
        tx.conn.execute(_TOUCH_ACTIVITY, {"_id": row["id"], "last_activity_at": tx.now})
        return
    row["conversation"] = conversation
    row["message_count"] = message_count
    tx.conn.execute(
        _TOUCH,
        {
            "_id": row["id"],
            "conversation": conversation,
            "message_count": row["message_count"],
            "last_activity_at": tx.now,
        },
    )


def sandbox_due(sandbox: dict[str, Any], hibernate_after: int | None) -> int | None:
    """When an active sandbox hibernates: its last use plus ``hibernate_after`` seconds
    (None when it is not active or never hibernates)."""
    used = sandbox.get("lastUsedAt")
    if sandbox.get("state") != "active" or hibernate_after is None or used is None:
        return None
    return int(used) + hibernate_after * 1000


def emit(tx: Tx, row: dict[str, Any], type: str, data: Any, *, activity: bool = False) -> None:
    """Write an event of this session's stream (its account, id and workspace), in the
    caller's transaction; it is published after commit. ``activity``: the write counts as
    activity on the session too (``lastActivityAt``, see ``touch``)."""
    if activity:
        touch(tx, row)
    tx.emit(row["account_id"], type, data, session_id=row["id"], workspace_id=row["workspace_id"])


def expire(tx: Tx, row: dict[str, Any]) -> None:
    write_fields(
        tx,
        row,
        {
            "status": "expired",
            "lifecycle_version": row["lifecycle_version"] + 1,
            "updated_at": tx.now,
        },
    )
    emit(tx, row, "session.status", {"from": "active", "to": "expired", "reason": "ttl"})
