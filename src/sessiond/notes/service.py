"""Note service: markdown notes of a session, listable across the account.

Writes lock the session row, require it ``active`` and emit ``note.*`` in the same
transaction. Lists are keyset-paginated on the note id (a ULID: oldest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import NotFound, ValidationFailed, invalid
from sessiond.ids import iso, new_id
from sessiond.notes.models import KINDS, NoteCreate, NotePatch
from sessiond.pagination import keyset
from sessiond.sessions import kernel
from sessiond.settings import Limits
from sessiond.workspaces import service as workspaces

n = t.notes
FIELDS = ("kind", "title", "body")


def note_not_found(note_id: str) -> NotFound:
    return NotFound(f"note {note_id} not found in this session")


def render(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sessionId": row["session_id"],
        "workspaceId": row["workspace_id"],
        "kind": row["kind"],
        "title": row["title"],
        "body": row["body"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _check(limits: Limits, title: str | None, body: str | None) -> None:
    errors: list[dict[str, str]] = []
    if title is not None and len(title) > limits.title_chars:
        errors.append({"field": "title", "message": f"at most {limits.title_chars} characters"})
    if body is not None and len(body.encode("utf-8")) > limits.note_body_bytes:
        errors.append(
            {"field": "body", "message": f"at most {limits.note_body_bytes} bytes (UTF-8 encoded)"}
        )
    if errors:
        raise ValidationFailed(errors)


# -- reads ---------------------------------------------------------------------------------


def _row(tx: Tx, account_id: str, session_id: str, note_id: str) -> dict[str, Any]:
    return kernel.fetch_one(tx, n, account_id, session_id, note_id, note_not_found)


def get(tx: Tx, account_id: str, session_id: str, note_id: str) -> dict[str, Any]:
    kernel.require_exists(tx, account_id, session_id)
    return render(_row(tx, account_id, session_id, note_id))


@dataclass(frozen=True)
class NoteFilters:
    workspace_id: str | None = None
    session_id: str | None = None
    kind: str | None = None


def check_kind(kind: str | None) -> str | None:
    if kind is None or kind == "":
        return None
    if kind not in KINDS:
        raise invalid("kind", f"must be one of {', '.join(KINDS)}")
    return kind


def _page(
    tx: Tx, q: sa.Select[Any], kind: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    rows, next_cursor = keyset(tx, q, n.c.id, kind, limit=limit, cursor=cursor)
    return [render(row) for row in rows], next_cursor


def list_session(
    tx: Tx, account_id: str, session_id: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the session's notes, oldest first."""
    kernel.require_exists(tx, account_id, session_id)
    q = sa.select(n).where(n.c.session_id == session_id, n.c.account_id == account_id)
    return _page(tx, q, "notes", limit, cursor)


def list_account(
    tx: Tx, account_id: str, f: NoteFilters, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the account's notes, oldest first. A ``sessionId`` or ``workspaceId``
    filter naming one the account does not have → 404 (as the account event stream)."""
    q = sa.select(n).where(n.c.account_id == account_id, kernel.shown(n.c.session_id, account_id))
    if f.session_id is not None:
        kernel.require_exists(tx, account_id, f.session_id)
        q = q.where(n.c.session_id == f.session_id)
    if f.workspace_id is not None:
        workspaces.require(tx, account_id, f.workspace_id)
        q = q.where(n.c.workspace_id == f.workspace_id)
    if f.kind is not None:
        q = q.where(n.c.kind == f.kind)
    return _page(tx, q, "notes:account", limit, cursor)


# -- writes --------------------------------------------------------------------------------


def create(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    body: NoteCreate,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    _check(limits, body.title, body.body)
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    row = {
        "id": new_id("nte"),
        "account_id": account_id,
        "session_id": session_id,
        "workspace_id": session["workspace_id"],
        "kind": body.kind,
        "title": body.title,
        "body": body.body,
        "created_at": tx.now,
        "updated_at": tx.now,
    }
    tx.conn.execute(n.insert(), row)
    note = render(row)
    kernel.emit(tx, session, "note.created", {"note": note}, activity=True)
    return note


def update(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    note_id: str,
    body: NotePatch,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """PATCH: the fields given. A change emits ``note.updated``; ``{}`` changes nothing."""
    given = body.model_fields_set
    for name in FIELDS:
        if name in given and getattr(body, name) is None:
            raise invalid(name, "may not be null")
    _check(limits, body.title, body.body)
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    row = _row(tx, account_id, session_id, note_id)
    changes = {k: getattr(body, k) for k in FIELDS if k in given and row[k] != getattr(body, k)}
    if not changes:
        return render(row)
    changes["updated_at"] = tx.now
    tx.conn.execute(n.update().where(n.c.id == note_id).values(**changes))
    row.update(changes)
    note = render(row)
    kernel.emit(tx, session, "note.updated", {"note": note}, activity=True)
    return note


def delete(
    tx: Tx,
    account_id: str,
    session_id: str,
    note_id: str,
    *,
    if_match: int | str | None = None,
) -> None:
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    _row(tx, account_id, session_id, note_id)
    tx.conn.execute(n.delete().where(n.c.id == note_id))
    kernel.emit(tx, session, "note.deleted", {"id": note_id}, activity=True)
