"""Annotation service: review notes on a file line range or on a message.

Writes lock the session row, require it ``active`` and emit ``annotation.*`` in the same
transaction. A ``{messageId}`` target must be a message on the session's current
conversation when it is set; a ``checkpointId`` must be one of the session's checkpoints
(another's, or another account's, is a 404). Lists are keyset-paginated on the id (oldest first).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sessiond.annotations import targets
from sessiond.annotations.models import STATUSES, AnnotationCreate, AnnotationPatch
from sessiond.conversation import messages
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import NotFound, invalid
from sessiond.files import diff
from sessiond.ids import iso, new_id
from sessiond.pagination import keyset
from sessiond.sessions import kernel
from sessiond.settings import Limits

a = t.annotations_table
FIELDS = ("target", "body", "status")


def annotation_not_found(annotation_id: str) -> NotFound:
    return NotFound(f"annotation {annotation_id} not found in this session")


def render(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sessionId": row["session_id"],
        "target": row["target"],
        "body": row["body"],
        "status": row["status"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def parse_statuses(value: str | None) -> list[str] | None:
    """``?status=open`` or a comma list (``open,resolved``); empty: every status."""
    if value is None or value.strip() == "":
        return None
    items = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in items if s not in STATUSES]
    if bad:
        raise invalid("status", f"unknown status {', '.join(bad)}; one of {', '.join(STATUSES)}")
    return items


def _check_body(limits: Limits, body: str) -> None:
    if body == "":
        raise invalid("body", "must not be empty")
    if len(body.encode("utf-8")) > limits.annotation_body_bytes:
        raise invalid("body", f"at most {limits.annotation_body_bytes} bytes (UTF-8 encoded)")


# -- reads ---------------------------------------------------------------------------------


def _row(tx: Tx, account_id: str, session_id: str, annotation_id: str) -> dict[str, Any]:
    return kernel.fetch_one(tx, a, account_id, session_id, annotation_id, annotation_not_found)


def get(tx: Tx, account_id: str, session_id: str, annotation_id: str) -> dict[str, Any]:
    kernel.require_exists(tx, account_id, session_id)
    return render(_row(tx, account_id, session_id, annotation_id))


def list_page(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    statuses: list[str] | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the session's annotations (optionally of some statuses), oldest first."""
    kernel.require_exists(tx, account_id, session_id)
    q = sa.select(a).where(a.c.session_id == session_id, a.c.account_id == account_id)
    if statuses is not None:
        q = q.where(a.c.status.in_(statuses))
    rows, next_cursor = keyset(tx, q, a.c.id, "annotations", limit=limit, cursor=cursor)
    return [render(row) for row in rows], next_cursor


# -- writes --------------------------------------------------------------------------------


def _check_target(tx: Tx, account_id: str, session_id: str, target: dict[str, Any]) -> None:
    """A message target must be on the session's current conversation (else 422); a
    checkpoint named by a file target must be one of this session's (else 404)."""
    checkpoint_id = target.get("checkpointId")
    if checkpoint_id is not None:
        diff.checkpoint_tree(tx, account_id, session_id, checkpoint_id)
    message_id = target.get("messageId")
    if message_id is None:
        return
    path = messages.read_path(tx, account_id, session_id)
    try:
        messages.seq_of(tx, account_id, path, message_id)
    except NotFound:
        raise invalid(
            "target.messageId",
            f"no message {message_id} on this session's current conversation",
        ) from None


def create(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    body: AnnotationCreate,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    target = targets.parse(body.target)
    _check_body(limits, body.body)
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    _check_target(tx, account_id, session_id, target)
    row = {
        "id": new_id("ann"),
        "account_id": account_id,
        "session_id": session_id,
        "target": target,
        "body": body.body,
        "status": body.status,
        "created_at": tx.now,
        "updated_at": tx.now,
    }
    tx.conn.execute(a.insert(), row)
    annotation = render(row)
    kernel.emit(tx, session, "annotation.created", {"annotation": annotation}, activity=True)
    return annotation


def update(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    annotation_id: str,
    body: AnnotationPatch,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """PATCH: the fields given (``target`` is replaced whole). ``{}`` changes nothing.
    Any status may follow any other (a resolved note can be reopened)."""
    given = body.model_fields_set
    for name in FIELDS:
        if name in given and getattr(body, name) is None:
            raise invalid(name, "may not be null")
    values: dict[str, Any] = {k: getattr(body, k) for k in FIELDS if k in given}
    if "target" in values:
        values["target"] = targets.parse(values["target"])
    if "body" in values:
        _check_body(limits, values["body"])
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    row = _row(tx, account_id, session_id, annotation_id)
    changes = {k: val for k, val in values.items() if row[k] != val}
    if "target" in changes:
        _check_target(tx, account_id, session_id, changes["target"])
    if not changes:
        return render(row)
    changes["updated_at"] = tx.now
    tx.conn.execute(a.update().where(a.c.id == annotation_id).values(**changes))
    row.update(changes)
    annotation = render(row)
    kernel.emit(tx, session, "annotation.updated", {"annotation": annotation}, activity=True)
    return annotation


def delete(
    tx: Tx,
    account_id: str,
    session_id: str,
    annotation_id: str,
    *,
    if_match: int | str | None = None,
) -> None:
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    _row(tx, account_id, session_id, annotation_id)
    tx.conn.execute(a.delete().where(a.c.id == annotation_id))
    kernel.emit(tx, session, "annotation.deleted", {"id": annotation_id}, activity=True)
