"""Approval service: request, decide (exactly once), read, list.

An approval is a question an agent asks a human: ``pending`` until someone grants or
denies it, then final. Writes lock the session row (``kernel.lock_light``), require
an ``active`` session and emit their event in the same transaction. The decision itself
is a conditional ``UPDATE ... WHERE status = 'pending'``, so of two concurrent decisions
exactly one changes the row, even without the session lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sessiond.approvals.models import COMMENT_MAX, KIND_MAX, MAX_OPTIONS, STATUSES, ApprovalCreate
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import InvalidTransition, NotFound, ValidationFailed, invalid
from sessiond.ids import iso, new_id
from sessiond.pagination import keyset
from sessiond.sessions import kernel
from sessiond.settings import Limits

CURSOR_KIND = "approvals"

a = t.approvals


def approval_not_found(approval_id: str) -> NotFound:
    return NotFound(f"approval {approval_id} not found in this session")


def render(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sessionId": row["session_id"],
        "workspaceId": row["workspace_id"],
        "title": row["title"],
        "details": row["details"],
        "kind": row["kind"],
        "options": row["options"],
        "status": row["status"],
        "comment": row["comment"],
        "optionId": row.get("option_id"),
        "decidedAt": iso(row["decided_at"]),
        "decidedBy": row["decided_by"],
        "createdAt": iso(row["created_at"]),
    }


def json_bytes(field: str, value: Any) -> int:
    """Size of ``value`` as compact JSON; NaN/Infinity (which Python's parser lets in) → 422."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise invalid(field, "must be JSON (NaN and Infinity are not JSON numbers)") from None
    return len(text.encode("utf-8"))


def _check_create(limits: Limits, body: ApprovalCreate) -> None:
    errors: list[dict[str, str]] = []
    if not 1 <= len(body.title) <= limits.title_chars:
        errors.append({"field": "title", "message": f"1 to {limits.title_chars} characters"})
    if body.kind is not None and not 1 <= len(body.kind) <= KIND_MAX:
        errors.append({"field": "kind", "message": f"1 to {KIND_MAX} characters, or null"})
    if body.options is not None and len(body.options) > MAX_OPTIONS:
        errors.append({"field": "options", "message": f"at most {MAX_OPTIONS} items"})
    for name in ("details", "options"):
        if json_bytes(name, getattr(body, name)) > limits.approval_json_bytes:
            errors.append(
                {"field": name, "message": f"at most {limits.approval_json_bytes} bytes of JSON"}
            )
    if errors:
        raise ValidationFailed(errors)


def _emit(tx: Tx, approval: dict[str, Any], account_id: str, type: str) -> None:
    tx.emit(
        account_id,
        type,
        {"approval": approval},
        session_id=approval["sessionId"],
        workspace_id=approval["workspaceId"],
    )


# -- writes --------------------------------------------------------------------------------


def _new_row(
    tx: Tx, session: dict[str, Any], title: str, details: Any, kind: str | None, options: Any
) -> dict[str, Any]:
    """Insert a pending approval of ``session`` (a locked session row)."""
    row: dict[str, Any] = {
        "id": new_id("apr"),
        "account_id": session["account_id"],
        "session_id": session["id"],
        "workspace_id": session["workspace_id"],
        "title": title,
        "details": details,
        "kind": kind,
        "options": options,
        "status": "pending",
        "comment": None,
        "decided_by": None,
        "option_id": None,
        "decided_at": None,
        "created_at": tx.now,
        "updated_at": tx.now,
    }
    tx.conn.execute(a.insert().values(**row))
    return row


def create(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    body: ApprovalCreate,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """Ask for a decision: a new ``pending`` approval and its ``approval.requested`` event."""
    _check_create(limits, body)
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    row = _new_row(tx, session, body.title, body.details, body.kind, body.options)
    approval = render(row)
    _emit(tx, approval, account_id, "approval.requested")
    return approval


def decide(
    tx: Tx,
    account_id: str,
    session_id: str,
    approval_id: str,
    verdict: str,
    *,
    comment: str | None,
    decided_by: str,
    option_id: str | None = None,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """``pending`` → ``granted`` | ``denied``, once; any later decision → 409.

    An approval with ACP options (an agent's permission request) records the option
    chosen: ``option_id`` when given (it must be one of them, of the verdict's side), else
    the first ``allow_once`` (grant) or ``reject_once`` (deny) option."""
    if verdict not in ("granted", "denied"):  # pragma: no cover - the routes pass constants
        raise ValueError(verdict)
    if comment is not None and len(comment) > COMMENT_MAX:
        raise invalid("comment", f"at most {COMMENT_MAX} characters")
    kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    current = _row(tx, account_id, session_id, approval_id)
    if current is None:
        raise approval_not_found(approval_id)
    option_id = choose_option(current["options"], verdict, option_id)
    changed = tx.conn.execute(
        a.update()
        .where(
            a.c.id == approval_id,
            a.c.session_id == session_id,
            a.c.account_id == account_id,
            a.c.status == "pending",
        )
        .values(
            status=verdict,
            comment=comment,
            option_id=option_id,
            decided_at=tx.now,
            decided_by=decided_by,
            updated_at=tx.now,
        )
    ).rowcount
    row = _row(tx, account_id, session_id, approval_id)
    if row is None:
        raise approval_not_found(approval_id)
    if changed != 1:
        raise InvalidTransition(
            f"approval {approval_id} is already {row['status']}; a decision is final "
            "(ask again with a new approval)",
            details={"status": row["status"]},
        )
    approval = render(row)
    _emit(tx, approval, account_id, "approval.resolved")
    return approval


ALLOW = ("allow_once", "allow_always")
REJECT = ("reject_once", "reject_always")


def choose_option(options: Any, verdict: str, option_id: str | None) -> str | None:
    """The option a decision stands for (None for approvals without ACP-style options)."""
    kinds: dict[str, Any] = {
        str(o["id"]): o.get("kind")
        for o in options or []
        if isinstance(o, dict) and isinstance(o.get("id"), str)
    }
    side = ALLOW if verdict == "granted" else REJECT
    if option_id is not None:
        if option_id not in kinds:
            raise invalid("optionId", f"not one of this approval's options: {sorted(kinds)}")
        if kinds[option_id] is not None and kinds[option_id] not in side:
            raise invalid(
                "optionId",
                f"option {option_id} is a {kinds[option_id]} option: it cannot "
                + ("grant" if verdict == "granted" else "deny"),
            )
        return option_id
    for kind in side:
        for oid, k in kinds.items():
            if k == kind:
                return oid
    return None


def create_for_agent(
    tx: Tx,
    session: dict[str, Any],
    *,
    title: str,
    details: Any,
    options: list[dict[str, Any]],
    decided: tuple[str, str] | None,
) -> dict[str, Any]:
    """An agent's permission request (kind ``agent_permission``): pending, or decided at
    once by the session's policy (``decided = (verdict, optionId)``, ``decidedBy:
    "policy"``), with its events (``approval.requested``, and ``approval.resolved``)."""
    row = _new_row(tx, session, title[:500] or "permission", details, "agent_permission", options)
    _emit(tx, render(row), session["account_id"], "approval.requested")
    if decided is not None:
        verdict, option_id = decided
        row.update(status=verdict, option_id=option_id, decided_by="policy", decided_at=tx.now)
        tx.conn.execute(
            a.update()
            .where(a.c.id == row["id"])
            .values(status=verdict, option_id=option_id, decided_by="policy", decided_at=tx.now)
        )
        _emit(tx, render(row), session["account_id"], "approval.resolved")
    return render(row)


def cancel_pending(tx: Tx, account_id: str, session_id: str, approval_ids: list[str]) -> int:
    """``pending`` → ``cancelled`` for these approvals (their turn ended first); each gets
    an ``approval.resolved`` event. Returns how many changed."""
    if not approval_ids:
        return 0
    q = sa.select(a).where(
        a.c.account_id == account_id,
        a.c.session_id == session_id,
        a.c.id.in_(approval_ids),
        a.c.status == "pending",
    )
    rows = [dict(r._mapping) for r in tx.conn.execute(q)]
    for row in rows:
        tx.conn.execute(
            a.update()
            .where(a.c.id == row["id"], a.c.status == "pending")
            .values(status="cancelled", decided_at=tx.now, decided_by="turn", updated_at=tx.now)
        )
        row.update(status="cancelled", decided_at=tx.now, decided_by="turn")
        _emit(tx, render(row), account_id, "approval.resolved")
    return len(rows)


# -- reads ---------------------------------------------------------------------------------


def _row(tx: Tx, account_id: str, session_id: str, approval_id: str) -> dict[str, Any] | None:
    found = tx.conn.execute(
        sa.select(a).where(
            a.c.id == approval_id,
            a.c.session_id == session_id,
            a.c.account_id == account_id,
            kernel.alive(a.c.session_id),
        )
    ).first()
    return None if found is None else dict(found._mapping)


def get(tx: Tx, account_id: str, session_id: str, approval_id: str) -> dict[str, Any]:
    row = _row(tx, account_id, session_id, approval_id)
    if row is None:
        kernel.require_exists(tx, account_id, session_id)
        raise approval_not_found(approval_id)
    return render(row)


def parse_status(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in STATUSES:
        raise invalid("status", f"must be one of {', '.join(STATUSES)}")
    return value


@dataclass(frozen=True)
class ApprovalFilters:
    status: str | None = None
    session_id: str | None = None
    workspace_id: str | None = None


def list_page(
    tx: Tx,
    account_id: str,
    f: ApprovalFilters,
    *,
    limit: int,
    cursor: str | None,
    session_scoped: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """Approvals oldest first, keyset-paginated on the id (ids sort by creation time).

    ``session_scoped``: the listing of one session (``f.session_id``), 404 if it is not
    this account's; otherwise the account-wide review queue, where filters never 404.
    """
    if session_scoped:
        assert f.session_id is not None
        kernel.require_exists(tx, account_id, f.session_id)
    q = sa.select(a).where(a.c.account_id == account_id)
    if not session_scoped:
        q = q.where(kernel.shown(a.c.session_id, account_id))
    if f.status is not None:
        q = q.where(a.c.status == f.status)
    if f.session_id is not None:
        q = q.where(a.c.session_id == f.session_id)
    if f.workspace_id is not None:
        q = q.where(a.c.workspace_id == f.workspace_id)
    rows, next_cursor = keyset(tx, q, a.c.id, CURSOR_KIND, limit=limit, cursor=cursor)
    return [render(r) for r in rows], next_cursor
