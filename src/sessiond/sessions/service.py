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

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import (
    invalid,
)
from sessiond.ids import new_id
from sessiond.memory import service as memories
from sessiond.sessions import figures, kernel, lifecycle
from sessiond.sessions import validation as v
from sessiond.sessions.merge_patch import merge_patch
from sessiond.sessions.models import POLICIES, SessionCreate, SessionPatch, TagsPatch
from sessiond.sessions.render import render_session, session_doc
from sessiond.settings import Limits
from sessiond.workspaces import service as workspaces

# No message yet (the path format: conversation/path.py, ``empty()``).
EMPTY_CONVERSATION: dict[str, Any] = {"head": None, "next": 1, "segments": []}
EMPTY_SANDBOX: dict[str, Any] = {"state": None, "lastUsedAt": None}

# Fields whose change bumps lifecycleVersion (API.md, Conventions).
VERSIONED_FIELDS = frozenset(
    {
        "title",
        "status",
        "tags",
        "metadata",
        "context",
        "ttl_seconds",
        "agent",
        "model",
        "mode",
        "permissions",
        "hibernate_after_seconds",
    }
)
# Fields a PATCH may change on a session that is not active (organising it stays possible).
ALWAYS_PATCHABLE = frozenset({"title", "tags", "metadata", "status"})
CAMEL = {
    "ttl_seconds": "ttlSeconds",
    "expires_at": "expiresAt",
    "hibernate_after_seconds": "hibernateAfterSeconds",
}
CUSTOM_TYPE = re.compile(r"custom\.[A-Za-z0-9_.:-]{1,90}")


def _emit_updated(tx: Tx, row: dict[str, Any], changes: Iterable[str]) -> None:
    fields = [CAMEL.get(c, c) for c in changes]
    kernel.emit(
        tx,
        row,
        "session.updated",
        {"changes": fields, "session": render_session(row, tx.now, context=False)},
    )


def _replace_tags(tx: Tx, row: dict[str, Any], tags: list[str], *, new: bool = False) -> None:
    """The session's tag rows become ``tags`` (``new``: it has none yet)."""
    if not new:
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
    kernel.write_fields(tx, row, values)
    return [k for k in changed if k in VERSIONED_FIELDS or k == "expires_at"]


# -- create --------------------------------------------------------------------------------


def _policy(value: str | None) -> str | None:
    if value is not None and value not in POLICIES:
        raise invalid("permissions", f"one of {', '.join(POLICIES)}, or null")
    return value


def create(tx: Tx, limits: Limits, account_id: str, body: SessionCreate) -> dict[str, Any]:
    v.check_title(limits, body.title)
    tags = v.clean_tags(limits, body.tags)
    v.check_json_object(limits, "metadata", body.metadata)
    v.check_json_object(limits, "context", body.context)
    v.check_ttl(body.ttl_seconds)
    v.check_hibernate_after(body.hibernate_after_seconds)
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
        "permissions": _policy(body.permissions),
        "usage": None,
        "acp_session_id": None,
        "permission_rules": None,
        "ttl_seconds": body.ttl_seconds,
        "expires_at": now + body.ttl_seconds * 1000 if body.ttl_seconds else None,
        "ephemeral": body.ephemeral,
        "message_count": 0,
        "summary": None,
        "last_error": None,
        "workspace": figures.workspace(),
        "repo": None,
        "sandbox": dict(EMPTY_SANDBOX),
        "sandbox_host": None,
        "sandbox_due": None,
        "hibernate_after_seconds": body.hibernate_after_seconds,
        "lifecycle_version": 1,
        "created_at": now,
        "updated_at": now,
        "last_activity_at": now,
        "closed_at": None,
        "conversation": EMPTY_CONVERSATION,
        "summary_due": None,
        "revert_undo": None,
        "commit_head": None,
        "environment_spec": None,
        "compactions": 0,
        "imported_from": None,
    }
    row["doc"] = session_doc(row)
    tx.conn.execute(t.sessions.insert(), row)
    if tags:
        _replace_tags(tx, row, tags, new=True)
    kernel.emit(tx, row, "session.created", {"session": render_session(row, now, context=False)})
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
    if "permissions" in given:
        changes["permissions"] = _policy(patch.permissions)
    if "hibernate_after_seconds" in given:
        v.check_hibernate_after(patch.hibernate_after_seconds)
        changes["hibernate_after_seconds"] = patch.hibernate_after_seconds
    if "ttl_seconds" in given:
        v.check_ttl(patch.ttl_seconds)

    row = kernel.load_for_write(
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
        raise kernel.not_active(row, status_after)
    if "hibernate_after_seconds" in changes:
        changes["sandbox_due"] = kernel.sandbox_due(
            row["sandbox"], changes["hibernate_after_seconds"]
        )

    changed = _apply(tx, row, changes)
    if "status" in changed:
        kernel.emit(tx, row, "session.status", {"from": before, "to": row["status"]})
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
    row = kernel.load_for_write(
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
    row = kernel.load_for_write(
        tx, account_id, session_id, if_match=if_match, expected_version=expected_version
    )
    kernel.require_active(row)
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
    row = kernel.load_for_write(
        tx, account_id, session_id, if_match=if_match, expected_version=expected_version
    )
    lifecycle.check_close(row["status"])
    # summary_due queues the summary (summaries.service produces it after the commit).
    _apply(tx, row, {"status": "closed", "closed_at": tx.now, "summary_due": tx.now})
    kernel.emit(tx, row, "session.status", {"from": "active", "to": "closed"})
    _emit_updated(tx, row, ["status"])
    return row


def delete(tx: Tx, account_id: str, session_id: str, *, if_match: int | str | None = None) -> None:
    """Mark the session deleted: from this commit on it answers 404 everywhere, and the
    sweeper purges its rows (``sessions.purge``). The cost does not grow with its history.

    What must stop at once goes now: its agent's lease and its queued or running turns
    (no worker may pick them up; the runner stops the agent on ``session.deleted``), and
    its memory items (account-wide search must not find them). ``session.deleted`` is on
    its stream and stays after the purge, so account-wide streams see it.
    """
    row = kernel.load_for_write(tx, account_id, session_id, if_match=if_match)
    tx.conn.execute(
        t.sessions.update()
        .where(t.sessions.c.id == session_id)
        .values(deleted_at=tx.now, summary_due=None, sandbox_due=None)
    )
    tx.conn.execute(t.agent_leases.delete().where(t.agent_leases.c.session_id == session_id))
    tx.conn.execute(
        t.turns.delete().where(
            t.turns.c.session_id == session_id, t.turns.c.status.in_(("queued", "running"))
        )
    )
    memories.delete_for_session(tx, account_id, session_id)
    kernel.emit(tx, row, "session.deleted", {"id": session_id})


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
    row = kernel.load_for_write(tx, account_id, session_id, if_match=if_match)
    kernel.require_active(row)
    kernel.emit(tx, row, type, data)
    return tx.events[-1]


# -- background ----------------------------------------------------------------------------


def sweep_expired(tx: Tx, *, limit: int) -> int:
    """Move up to ``limit`` active sessions whose TTL passed to ``expired`` (one event each).

    Ephemeral sessions are deleted instead of kept read-only. Returns how many changed.
    On PostgreSQL rows are claimed with ``SKIP LOCKED`` so instances share the work.
    """
    q = (
        sa.select(t.sessions)
        .where(
            t.sessions.c.status == "active",
            t.sessions.c.expires_at.is_not(None),
            t.sessions.c.expires_at <= tx.now,
            t.sessions.c.deleted_at.is_(None),
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
            kernel.expire(tx, row)
    return len(rows)
