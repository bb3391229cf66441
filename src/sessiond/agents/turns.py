"""Turn rows: one prompt = one turn (docs/design/agents.md).

A turn is created with its user message (and the automatic checkpoint before it) in one
transaction, ``queued``. A worker claims the session's next queued turn (lowest ``seq``)
with a conditional UPDATE, so no two workers run one turn; it ends ``completed``,
``cancelled`` or ``failed``. Every change writes its ``turn.*`` event in the same
transaction. Nothing about a turn lives only in a process.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sessiond.agents import stream
from sessiond.approvals import service as approvals
from sessiond.conversation.models import MessageCreate
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import NoAgent, NotFound, SessionBusy
from sessiond.ids import iso, new_id
from sessiond.pagination import keyset
from sessiond.sessions import kernel
from sessiond.sessions.render import EMPTY_USAGE
from sessiond.settings import Limits
from sessiond.versions import appends

tr = t.turns
LIVE = ("queued", "running")
ENDED = ("completed", "cancelled", "failed")
STOPPED_BY_RESTART = "the server stopped during this turn"


def turn_not_found(turn_id: str) -> NotFound:
    return NotFound(f"turn {turn_id} not found in this session")


def render(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sessionId": row["session_id"],
        "status": row["status"],
        "stopReason": row["stop_reason"],
        "userMessageId": row["user_message_id"],
        "assistantMessageId": row["assistant_message_id"],
        "checkpointId": row["checkpoint_id"],
        "filesChanged": row["files_changed"],
        "skipped": row["skipped"],
        "usage": row["usage"],
        "error": row["error"],
        "mode": row["mode"],
        "createdAt": iso(row["created_at"]),
        "startedAt": iso(row["started_at"]),
        "endedAt": iso(row["ended_at"]),
    }


def _emit(tx: Tx, session: dict[str, Any], type: str, row: dict[str, Any]) -> None:
    kernel.emit(tx, session, type, {"turn": render(row)})


def _row(tx: Tx, turn_id: str) -> dict[str, Any]:
    found = tx.conn.execute(sa.select(tr).where(tr.c.id == turn_id)).first()
    if found is None:
        raise turn_not_found(turn_id)
    return dict(found._mapping)


# -- reads ---------------------------------------------------------------------------------


def get(tx: Tx, account_id: str, session_id: str, turn_id: str) -> dict[str, Any]:
    kernel.require_exists(tx, account_id, session_id)
    return render(kernel.fetch_one(tx, tr, account_id, session_id, turn_id, turn_not_found))


def list_page(
    tx: Tx, account_id: str, session_id: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The session's turns, newest first."""
    kernel.require_exists(tx, account_id, session_id)
    q = sa.select(tr).where(tr.c.account_id == account_id, tr.c.session_id == session_id)
    rows, next_cursor = keyset(
        tx, q, tr.c.seq, "turns", limit=limit, cursor=cursor, descending=True
    )
    return [render(r) for r in rows], next_cursor


def live(tx: Tx, session_id: str) -> list[dict[str, Any]]:
    """The session's queued and running turns, in queue order."""
    q = sa.select(tr).where(tr.c.session_id == session_id, tr.c.status.in_(LIVE)).order_by(tr.c.seq)
    return [dict(r._mapping) for r in tx.conn.execute(q)]


def sessions_with_queued(tx: Tx) -> list[tuple[str, str]]:
    """``(account_id, session_id)`` of every session with a queued turn."""
    q = sa.select(tr.c.account_id, tr.c.session_id).where(tr.c.status == "queued").distinct()
    return [(r.account_id, r.session_id) for r in tx.conn.execute(q)]


# -- writes --------------------------------------------------------------------------------


def create(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    message: MessageCreate,
    *,
    multitask: str,
    mode: str | None,
    if_match: int | str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Append the prompt as a user message (with its checkpoint) and queue its turn.

    ``multitask`` while another turn is queued or running: ``enqueue`` queues it behind,
    ``reject`` → 409 ``session_busy``, ``interrupt`` asks the running turn to stop first
    (it ends ``cancelled``). Returns the turn and the ids of turns asked to stop."""
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match, full=True)
    if session["agent"] is None:
        raise NoAgent(
            f'session {session_id} has no agent: set one with PATCH {{"agent": <name>}} '
            "(GET /v1/agents lists them)"
        )
    busy = live(tx, session_id)
    if busy and multitask == "reject":
        raise SessionBusy(
            f"session {session_id} has {len(busy)} turn(s) queued or running "
            "(multitask: enqueue queues this one behind them)",
            details={"turns": [r["id"] for r in busy]},
        )
    interrupted: list[str] = []
    if multitask == "interrupt":
        for other in busy:
            if other["status"] == "running" and not other["cancel_requested"]:
                tx.conn.execute(
                    tr.update().where(tr.c.id == other["id"]).values(cancel_requested=True)
                )
                interrupted.append(other["id"])
    user = appends.append(tx, limits, account_id, session_id, message)
    seq = tx.conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(tr.c.seq), 0)).where(tr.c.session_id == session_id)
    ).scalar_one()
    row: dict[str, Any] = {
        "id": new_id("trn"),
        "account_id": account_id,
        "session_id": session_id,
        "seq": int(seq) + 1,
        "status": "queued",
        "stop_reason": None,
        "user_message_id": user["id"],
        "assistant_message_id": None,
        "checkpoint_id": None,
        "files_changed": [],
        "skipped": [],
        "usage": None,
        "error": None,
        "mode": mode,
        "cancel_requested": False,
        "created_at": tx.now,
        "started_at": None,
        "ended_at": None,
    }
    tx.conn.execute(tr.insert().values(**row))
    _emit(tx, session, "turn.queued", row)
    return render(row), interrupted


def take_lease(tx: Tx, account_id: str, session_id: str, owner: str, ttl_ms: int) -> bool:
    """Own the session's agent for ``ttl_ms`` (renewed by ``heartbeat``): True when the
    lease was free, expired or already ``owner``'s."""
    le = t.agent_leases
    row = tx.conn.execute(
        sa.select(le.c.owner, le.c.expires_at).where(le.c.session_id == session_id)
    ).first()
    if row is not None and row.owner != owner and row.expires_at > tx.now:
        return False
    values = {"owner": owner, "expires_at": tx.now + ttl_ms, "account_id": account_id}
    if row is None:
        tx.conn.execute(le.insert().values(session_id=session_id, **values))
        return True
    # Only if it is still as read: two instances taking an expired lease, one wins.
    changed = tx.conn.execute(
        le.update()
        .where(
            le.c.session_id == session_id,
            le.c.owner == row.owner,
            le.c.expires_at == row.expires_at,
        )
        .values(**values)
    ).rowcount
    return bool(changed == 1)


def release_lease(tx: Tx, session_id: str, owner: str) -> None:
    le = t.agent_leases
    tx.conn.execute(le.delete().where(le.c.session_id == session_id, le.c.owner == owner))


def leased_with_queued(tx: Tx, owner: str) -> list[tuple[str, str]]:
    """``(account_id, session_id)`` of sessions ``owner`` holds that have a queued turn."""
    le = t.agent_leases
    q = (
        sa.select(tr.c.account_id, tr.c.session_id)
        .join(le, le.c.session_id == tr.c.session_id)
        .where(tr.c.status == "queued", le.c.owner == owner)
        .distinct()
    )
    return [(r.account_id, r.session_id) for r in tx.conn.execute(q)]


def claim_next(
    tx: Tx, session_id: str, owner: str, lease_ms: int = 30_000
) -> dict[str, Any] | None:
    """The session's next queued turn, now ``running`` (None when one already runs, none
    is queued, another instance holds the session's lease, or the session is no longer
    active: its queued turns are then cancelled). Takes or renews the lease."""
    rows = live(tx, session_id)
    if not rows or any(r["status"] == "running" for r in rows):
        return None
    if not take_lease(tx, rows[0]["account_id"], session_id, owner, lease_ms):
        return None
    session = kernel.load_for_write(tx, rows[0]["account_id"], session_id)
    if session["status"] != "active":
        for row in rows:
            _end(
                tx,
                session,
                row,
                "cancelled",
                stop_reason="cancelled",
                error="the session is not active",
            )
        return None
    row = rows[0]
    changed = tx.conn.execute(
        tr.update()
        .where(tr.c.id == row["id"], tr.c.status == "queued")
        .values(status="running", started_at=tx.now, owner=owner, heartbeat_at=tx.now)
    ).rowcount
    if changed != 1:
        return None
    row.update(status="running", started_at=tx.now, owner=owner, heartbeat_at=tx.now)
    if session["activity"] != "busy":
        kernel.write_fields(tx, session, {"activity": "busy"})
    _emit(tx, session, "turn.started", row)
    return {**row, "session": session}


def set_assistant(tx: Tx, turn_id: str, message_id: str) -> None:
    tx.conn.execute(tr.update().where(tr.c.id == turn_id).values(assistant_message_id=message_id))


def cancel_requested(tx: Tx, turn_id: str) -> bool:
    return bool(
        tx.conn.execute(sa.select(tr.c.cancel_requested).where(tr.c.id == turn_id)).scalar()
    )


def _add_usage(total: dict[str, Any] | None, usage: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(total or EMPTY_USAGE)
    out["turns"] = int(out.get("turns", 0)) + 1
    for name in ("inputTokens", "outputTokens", "totalTokens"):
        out[name] = int(out.get(name, 0)) + int((usage or {}).get(name) or 0)
    out["costUsd"] = round(
        float(out.get("costUsd", 0)) + float((usage or {}).get("costUsd") or 0), 6
    )
    return out


def _end(
    tx: Tx,
    session: dict[str, Any],
    row: dict[str, Any],
    status: str,
    **values: Any,
) -> dict[str, Any]:
    values = {"status": status, "ended_at": tx.now, **values}
    tx.conn.execute(tr.update().where(tr.c.id == row["id"]).values(**values))
    row.update(values)
    _emit(tx, session, f"turn.{status}", row)
    return row


def finish(
    tx: Tx,
    turn_id: str,
    status: str,
    *,
    stop_reason: str | None,
    usage: dict[str, Any] | None,
    error: str | None,
    files_changed: list[str],
    skipped: list[dict[str, str]],
    checkpoint_id: str | None,
    approvals_asked: list[str],
) -> dict[str, Any]:
    """End a running turn: its row, the session's usage and activity, its pending
    approvals cancelled, ``turn.<status>``."""
    row = _row(tx, turn_id)
    session = kernel.load_for_write(tx, row["account_id"], row["session_id"])
    approvals.cancel_pending(tx, row["account_id"], row["session_id"], approvals_asked)
    ended = _end(
        tx,
        session,
        row,
        status,
        stop_reason=stop_reason,
        usage=usage,
        error=error,
        files_changed=files_changed,
        skipped=skipped,
        checkpoint_id=checkpoint_id,
    )
    fields: dict[str, Any] = {"usage": _add_usage(session.get("usage"), usage)}
    others = [r for r in live(tx, row["session_id"]) if r["status"] == "running"]
    if not others:
        fields["activity"] = "idle"
    kernel.write_fields(tx, session, fields)
    return render(ended)


def request_cancel(
    tx: Tx, account_id: str, session_id: str, *, queued: bool
) -> tuple[list[str], list[str]]:
    """Ask the running turn to stop; with ``queued``, cancel the queued ones now.
    Returns ``(running turns asked to stop, queued turns cancelled)``."""
    session = kernel.load_for_write(tx, account_id, session_id)
    running: list[str] = []
    dropped: list[str] = []
    for row in live(tx, session_id):
        if row["status"] == "running":
            tx.conn.execute(tr.update().where(tr.c.id == row["id"]).values(cancel_requested=True))
            running.append(row["id"])
        elif queued:
            _end(tx, session, row, "cancelled", stop_reason="cancelled", error=None)
            dropped.append(row["id"])
    return running, dropped


def heartbeat(tx: Tx, owner: str, lease_ms: int = 30_000) -> None:
    """This instance still runs its running turns, and still holds its leases."""
    q = tr.update().where(tr.c.owner == owner, tr.c.status == "running").values(heartbeat_at=tx.now)
    tx.conn.execute(q)
    le = t.agent_leases
    tx.conn.execute(le.update().where(le.c.owner == owner).values(expires_at=tx.now + lease_ms))


def _dead(owner: str | None, now: int, stale_ms: int) -> Any:
    return sa.and_(
        tr.c.status == "running",
        sa.or_(
            tr.c.owner == owner if owner is not None else sa.false(),
            tr.c.owner.is_(None),
            tr.c.heartbeat_at.is_(None),
            tr.c.heartbeat_at < now - stale_ms,
        ),
    )


def dead(tx: Tx, owner: str | None, stale_ms: int) -> list[dict[str, Any]]:
    """Read-only: the ``running`` turns whose process is gone — this instance's own (at its
    start: they are from before it), and any instance's without a heartbeat for
    ``stale_ms`` — as ``(id, account_id, session_id)`` dicts."""
    q = sa.select(tr.c.id, tr.c.account_id, tr.c.session_id).where(_dead(owner, tx.now, stale_ms))
    return [dict(r._mapping) for r in tx.conn.execute(q)]


def fail_dead(
    tx: Tx,
    limits: Limits,
    turn_id: str,
    owner: str | None,
    stale_ms: int,
    files_changed: list[str],
    skipped: list[dict[str, str]],
    checkpoint_id: str | None,
) -> dict[str, Any] | None:
    """Fail one dead turn (still dead: see ``dead``) with what its directory held, saved
    before (so the ``failed`` turn shows its files from the first read): its streaming
    message ``error``, its pending approvals cancelled, the session idle. None when it is
    no longer running or no longer dead."""
    q = sa.select(tr).where(tr.c.id == turn_id, _dead(owner, tx.now, stale_ms))
    found = tx.conn.execute(q).first()
    if found is None:
        return None
    row = dict(found._mapping)
    session = kernel.load_for_write(tx, row["account_id"], row["session_id"])
    pending = tx.conn.execute(
        sa.select(t.approvals.c.id).where(
            t.approvals.c.session_id == row["session_id"],
            t.approvals.c.status == "pending",
            t.approvals.c.kind == "agent_permission",
        )
    ).scalars()
    approvals.cancel_pending(tx, row["account_id"], row["session_id"], list(pending))
    if row["assistant_message_id"]:
        stream.end_message(tx, limits, session, row["assistant_message_id"], "error")
    _end(
        tx,
        session,
        row,
        "failed",
        error=STOPPED_BY_RESTART,
        files_changed=files_changed,
        skipped=skipped,
        checkpoint_id=checkpoint_id,
    )
    if session["activity"] != "idle":
        kernel.write_fields(tx, session, {"activity": "idle"})
    return render(row)
