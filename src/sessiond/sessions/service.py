"""Session service: create, read, patch, tags, context, close, delete, expiry sweep.

Every function runs inside the caller's transaction (``Tx``) and is scoped by account:
another account's session is indistinguishable from a missing one (404). Writes load
the row ``FOR UPDATE`` (PostgreSQL; SQLite has a single writer), check the client's
precondition (``If-Match`` → 412, ``expectedVersion`` → 409) and emit their events in
the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from sessiond.conversation import path as conversation_path
from sessiond.conversation import store as conversation_store
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import (
    NotFound,
    PreconditionFailed,
    SessionNotActive,
    VersionConflict,
    invalid,
)
from sessiond.ids import new_id
from sessiond.sessions import lifecycle
from sessiond.sessions import validation as v
from sessiond.sessions.merge_patch import merge_patch
from sessiond.sessions.models import SessionCreate, SessionPatch, TagsPatch
from sessiond.sessions.render import render_session, session_doc, splice
from sessiond.settings import Limits
from sessiond.workspaces import service as workspaces

# The git hash of the empty tree: the workspace of a session with no files.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
EMPTY_SANDBOX = {"state": None, "expiresAt": None, "hibernateAfter": None, "snapshot": None}

# Fields whose change bumps lifecycleVersion (API.md, Conventions).
VERSIONED_FIELDS = frozenset(
    {"title", "status", "tags", "metadata", "context", "ttl_seconds", "agent", "model", "mode"}
)
# Fields a PATCH may change on a session that is not active (organising it stays possible).
ALWAYS_PATCHABLE = frozenset({"title", "tags", "metadata", "status"})
CAMEL = {"ttl_seconds": "ttlSeconds", "expires_at": "expiresAt"}
# Rows that belong to one session and go with it (messages go through their refs).
SESSION_OWNED = (
    t.session_tags,
    t.tasks,
    t.notes,
    t.annotations_table,
    t.approvals,
    t.cache_entries,
    t.checkpoints,
    t.commits,
)
CUSTOM_TYPE = re.compile(r"custom\.[A-Za-z0-9_.:-]{1,90}")


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


# -- reads ---------------------------------------------------------------------------------


def get_row(tx: Tx, account_id: str, session_id: str) -> dict[str, Any]:
    row = tx.conn.execute(
        sa.select(t.sessions).where(
            t.sessions.c.id == session_id, t.sessions.c.account_id == account_id
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
)


def require_exists(tx: Tx, account_id: str, session_id: str) -> None:
    """404 unless the account has this session (reads of session-scoped resources)."""
    found = tx.conn.execute(_EXISTS, {"session_id": session_id, "account_id": account_id})
    if found.first() is None:
        raise not_found(session_id)


_WORKSPACE = sa.select(t.sessions.c.workspace).where(
    t.sessions.c.id == sa.bindparam("session_id"),
    t.sessions.c.account_id == sa.bindparam("account_id"),
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
        _expire(tx, data)
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


def touch(tx: Tx, row: dict[str, Any], *, conversation: Any = None) -> None:
    """Record activity (and, if given, a new conversation path with its message count)
    without rewriting ``doc``: the hot path of appends and other session-scoped writes."""
    row["last_activity_at"] = tx.now
    if conversation is None:
        tx.conn.execute(_TOUCH_ACTIVITY, {"_id": row["id"], "last_activity_at": tx.now})
        return
    row["conversation"] = conversation
    row["message_count"] = conversation_path.count(conversation)
    tx.conn.execute(
        _TOUCH,
        {
            "_id": row["id"],
            "conversation": conversation,
            "message_count": row["message_count"],
            "last_activity_at": tx.now,
        },
    )


def _emit(tx: Tx, row: dict[str, Any], type: str, data: Any) -> None:
    tx.emit(row["account_id"], type, data, session_id=row["id"], workspace_id=row["workspace_id"])


def _emit_updated(tx: Tx, row: dict[str, Any], changes: Iterable[str]) -> None:
    fields = [CAMEL.get(c, c) for c in changes]
    _emit(
        tx,
        row,
        "session.updated",
        {"changes": fields, "session": render_session(row, tx.now, context=False)},
    )


def _expire(tx: Tx, row: dict[str, Any]) -> None:
    write_fields(
        tx,
        row,
        {
            "status": "expired",
            "lifecycle_version": row["lifecycle_version"] + 1,
            "updated_at": tx.now,
        },
    )
    _emit(tx, row, "session.status", {"from": "active", "to": "expired", "reason": "ttl"})


def _replace_tags(tx: Tx, row: dict[str, Any], tags: list[str]) -> None:
    tx.conn.execute(t.session_tags.delete().where(t.session_tags.c.session_id == row["id"]))
    if tags:
        tx.conn.execute(
            t.session_tags.insert(),
            [
                {"session_id": row["id"], "tag": tag, "account_id": row["account_id"]}
                for tag in tags
            ],
        )


def _apply(tx: Tx, row: dict[str, Any], changes: dict[str, Any]) -> list[str]:
    """Write the fields that really change; bump the version once if any did."""
    changed = {k: val for k, val in changes.items() if row[k] != val}
    if not changed:
        return []
    values = dict(changed)
    values["updated_at"] = tx.now
    if any(k in VERSIONED_FIELDS for k in changed):
        values["lifecycle_version"] = row["lifecycle_version"] + 1
    if "tags" in changed:
        _replace_tags(tx, row, changed["tags"])
    write_fields(tx, row, values)
    return [k for k in changed if k in VERSIONED_FIELDS or k == "expires_at"]


# -- create --------------------------------------------------------------------------------


def create(tx: Tx, limits: Limits, account_id: str, body: SessionCreate) -> dict[str, Any]:
    v.check_title(limits, body.title)
    tags = v.clean_tags(limits, body.tags)
    v.check_json_object(limits, "metadata", body.metadata)
    v.check_json_object(limits, "context", body.context)
    v.check_ttl(body.ttl_seconds)
    for name in ("agent", "model", "mode"):
        v.check_name(name, getattr(body, name))
    workspaces.require(tx, account_id, body.workspace_id)
    now = tx.now
    row: dict[str, Any] = {
        "id": new_id("ses"),
        "account_id": account_id,
        "workspace_id": body.workspace_id,
        "title": body.title,
        "status": "active",
        "activity": "idle",
        "tags": tags,
        "metadata": body.metadata,
        "context": body.context,
        "parent_id": None,
        "forked_from": None,
        "agent": body.agent,
        "model": body.model,
        "mode": body.mode,
        "ttl_seconds": body.ttl_seconds,
        "expires_at": now + body.ttl_seconds * 1000 if body.ttl_seconds else None,
        "ephemeral": body.ephemeral,
        "message_count": 0,
        "summary": None,
        "last_error": None,
        "workspace": {
            "head": EMPTY_TREE,
            "base": EMPTY_TREE,
            "filesChanged": 0,
            "linesAdded": 0,
            "linesRemoved": 0,
        },
        "repo": None,
        "sandbox": dict(EMPTY_SANDBOX),
        "lifecycle_version": 1,
        "created_at": now,
        "updated_at": now,
        "last_activity_at": now,
        "closed_at": None,
        "conversation": conversation_path.empty(),
        "summary_due": None,
        "revert_undo": None,
        "commit_head": None,
        "environment_spec": None,
    }
    row["doc"] = session_doc(row)
    tx.conn.execute(t.sessions.insert(), row)
    if tags:
        _replace_tags(tx, row, tags)
    _emit(tx, row, "session.created", {"session": render_session(row, now, context=False)})
    return row


# -- patch ---------------------------------------------------------------------------------


def update(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    patch: SessionPatch,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """PATCH: only the fields present in the body; ``{}`` changes nothing."""
    given = patch.model_fields_set - {"expected_version"}
    for name in ("status", "tags", "metadata"):
        if name in given and getattr(patch, name) is None:
            raise invalid(name, "may not be null")
    changes: dict[str, Any] = {}
    if "title" in given:
        v.check_title(limits, patch.title)
        changes["title"] = patch.title
    if "tags" in given:
        changes["tags"] = v.clean_tags(limits, patch.tags or [])
    if "metadata" in given:
        changes["metadata"] = v.check_json_object(limits, "metadata", patch.metadata)
    for name in ("agent", "model", "mode"):
        if name in given:
            v.check_name(name, getattr(patch, name))
            changes[name] = getattr(patch, name)
    if "ttl_seconds" in given:
        v.check_ttl(patch.ttl_seconds)

    row = load_for_write(
        tx, account_id, session_id, if_match=if_match, expected_version=patch.expected_version
    )
    before = row["status"]
    if patch.status is not None and lifecycle.check_patch_transition(before, patch.status):
        changes["status"] = patch.status
        if patch.status == "active":  # unarchive: a fresh TTL window, no longer closed
            ttl = patch.ttl_seconds if "ttl_seconds" in given else row["ttl_seconds"]
            changes["expires_at"] = tx.now + ttl * 1000 if ttl else None
            changes["closed_at"] = None
    status_after = changes.get("status", before)
    if "ttl_seconds" in given:
        changes["ttl_seconds"] = patch.ttl_seconds
        if row["ttl_seconds"] != patch.ttl_seconds or "status" in changes:
            changes["expires_at"] = tx.now + patch.ttl_seconds * 1000 if patch.ttl_seconds else None
    needs_active = {k for k in given if k not in ALWAYS_PATCHABLE}
    if needs_active and status_after != "active":
        raise not_active(row, status_after)

    changed = _apply(tx, row, changes)
    if "status" in changed:
        _emit(tx, row, "session.status", {"from": before, "to": row["status"]})
    if changed:
        _emit_updated(tx, row, changed)
    return row


def update_tags(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    body: TagsPatch,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    row = load_for_write(
        tx, account_id, session_id, if_match=if_match, expected_version=body.expected_version
    )
    tags = list(row["tags"]) if body.set is None else v.clean_tags(limits, body.set, "set")
    for tag in v.clean_tags(limits, body.add or [], "add"):
        if tag not in tags:
            tags.append(tag)
    remove = set(body.remove or [])
    tags = v.clean_tags(limits, [tag for tag in tags if tag not in remove])
    changed = _apply(tx, row, {"tags": tags})
    if changed:
        _emit_updated(tx, row, changed)
    return row


# -- context -------------------------------------------------------------------------------


def _set_context(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    compute: Any,
    *,
    if_match: int | str | None,
    expected_version: int | None,
) -> dict[str, Any]:
    row = load_for_write(
        tx, account_id, session_id, if_match=if_match, expected_version=expected_version
    )
    require_active(row)
    new = v.check_json_object(limits, "context", compute(row["context"]))
    if _apply(tx, row, {"context": new}):
        _emit_updated(tx, row, ["context"])
    return new


def replace_context(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    context: Any,
    *,
    if_match: int | str | None = None,
    expected_version: int | None = None,
) -> dict[str, Any]:
    """PUT: the context becomes exactly ``context`` (a JSON object)."""
    return _set_context(
        tx,
        limits,
        account_id,
        session_id,
        lambda _old: context,
        if_match=if_match,
        expected_version=expected_version,
    )


def patch_context(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    patch: Any,
    *,
    if_match: int | str | None = None,
    expected_version: int | None = None,
) -> dict[str, Any]:
    """PATCH: RFC 7386 JSON Merge Patch; the result must still be an object."""
    return _set_context(
        tx,
        limits,
        account_id,
        session_id,
        lambda old: merge_patch(old, patch),
        if_match=if_match,
        expected_version=expected_version,
    )


# -- close, delete, custom events ----------------------------------------------------------


def close(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    if_match: int | str | None = None,
    expected_version: int | None = None,
) -> dict[str, Any]:
    row = load_for_write(
        tx, account_id, session_id, if_match=if_match, expected_version=expected_version
    )
    lifecycle.check_close(row["status"])
    # summary_due queues the summary (summaries.service produces it after the commit).
    _apply(tx, row, {"status": "closed", "closed_at": tx.now, "summary_due": tx.now})
    _emit(tx, row, "session.status", {"from": "active", "to": "closed"})
    _emit_updated(tx, row, ["status"])
    return row


def delete(tx: Tx, account_id: str, session_id: str, *, if_match: int | str | None = None) -> None:
    """Delete the session and everything that belongs to it (its events included).

    The ``session.deleted`` event is written after, so account-wide streams see it.
    """
    row = load_for_write(tx, account_id, session_id, if_match=if_match)
    conversation_store.release(tx, session_id)
    for table in SESSION_OWNED:
        tx.conn.execute(table.delete().where(table.c.session_id == session_id))
    tx.conn.execute(t.events.delete().where(t.events.c.session_id == session_id))
    tx.conn.execute(t.sessions.delete().where(t.sessions.c.id == session_id))
    _emit(tx, row, "session.deleted", {"id": session_id})


def publish_custom(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    type: str,
    data: Any,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """A ``custom.*`` event on the session's stream. Returns the event (id set at flush)."""
    if not CUSTOM_TYPE.fullmatch(type):
        raise invalid("type", "must be custom.<name> with <name> of 1 to 90 of [A-Za-z0-9_.:-]")
    if v.json_size(data) > limits.event_data_bytes:
        raise invalid("data", f"at most {limits.event_data_bytes} bytes of JSON")
    row = load_for_write(tx, account_id, session_id, if_match=if_match)
    require_active(row)
    _emit(tx, row, type, data)
    return tx.events[-1]


# -- background ----------------------------------------------------------------------------


def sweep_expired(tx: Tx, *, limit: int = 500) -> int:
    """Move active sessions whose TTL passed to ``expired`` (one event each).

    Ephemeral sessions are deleted instead of kept read-only. Returns how many changed.
    On PostgreSQL rows are claimed with ``SKIP LOCKED`` so instances share the work.
    """
    q = (
        sa.select(t.sessions)
        .where(
            t.sessions.c.status == "active",
            t.sessions.c.expires_at.is_not(None),
            t.sessions.c.expires_at <= tx.now,
        )
        .limit(limit)
    )
    if tx.is_postgres:
        q = q.with_for_update(skip_locked=True)
    rows = [dict(r._mapping) for r in tx.conn.execute(q)]
    for row in rows:
        if row["ephemeral"]:
            delete(tx, row["account_id"], row["id"])
        else:
            _expire(tx, row)
    return len(rows)
