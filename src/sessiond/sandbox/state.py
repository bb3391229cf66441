"""A sandbox's state on its session row, and the events of its transitions.

Each function is one step of the state machine of docs/design/sandbox.md, run in the
caller's transaction with its event. They write the server's own bookkeeping, so they
do not bump ``lifecycleVersion`` (a client's If-Match is not broken by a hibernation).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import SessionBusy
from sessiond.sessions import kernel

STATES = ("provisioning", "active", "hibernating", "hibernated", "restoring", "failed")
# What ``begin`` found: the directory is ready here, or must be written first.
READY, PROVISION, RESTORE = "ready", "provision", "restore"


def _write(tx: Tx, row: dict[str, Any], sandbox: dict[str, Any], host: str | None) -> None:
    kernel.write_fields(
        tx,
        row,
        {
            "sandbox": sandbox,
            "sandbox_host": host,
            "sandbox_due": kernel.sandbox_due(sandbox, row["hibernate_after_seconds"]),
        },
    )


def ready_here(tx: Tx, account_id: str, session_id: str, host: str, *, on_disk: bool) -> bool:
    """Read-only: the session is active and its sandbox is active on ``host`` with its
    directory there (``on_disk``): a turn or an exec may use it as it is, with no write
    (its idle clock restarts when the use ends: ``used``). Raises ``NotFound`` for a
    session that does not exist and ``SessionNotActive`` for one that is not active."""
    row = kernel.get_row(tx, account_id, session_id)
    kernel.require_active(row)
    box = row["sandbox"] or {}
    return bool(on_disk and box.get("state") == "active" and row["sandbox_host"] == host)


def begin(tx: Tx, account_id: str, session_id: str, host: str, *, on_disk: bool) -> str:
    """Before a turn or an exec: READY when the directory is active here (``on_disk``),
    its last use set to now; else the state becomes ``provisioning`` (never used) or
    ``restoring`` and the caller writes the directory, then calls ``ready``. Raises
    ``SessionNotActive`` for a session that is not active."""
    row = kernel.load_for_write(tx, account_id, session_id)
    kernel.require_active(row)
    box = dict(row["sandbox"] or {})
    if box.get("state") == "active" and row["sandbox_host"] == host and on_disk:
        box["lastUsedAt"] = tx.now
        _write(tx, row, box, host)
        return READY
    fresh = box.get("state") in (None, "provisioning") or (
        box.get("state") == "failed" and box.get("lastUsedAt") is None
    )
    box["state"] = "provisioning" if fresh else "restoring"
    _write(tx, row, box, host)
    return PROVISION if fresh else RESTORE


def ready(tx: Tx, account_id: str, session_id: str, host: str, kind: str) -> None:
    row = kernel.load_for_write(tx, account_id, session_id)
    box = {**(row["sandbox"] or {}), "state": "active", "lastUsedAt": tx.now}
    _write(tx, row, box, host)
    event = "sandbox.provisioned" if kind == PROVISION else "sandbox.restored"
    kernel.emit(tx, row, event, {"host": host})


def failed(tx: Tx, account_id: str, session_id: str, error: str) -> None:
    row = kernel.load_for_write(tx, account_id, session_id)
    box = {**(row["sandbox"] or {}), "state": "failed"}
    _write(tx, row, box, None)
    kernel.emit(tx, row, "sandbox.failed", {"error": error[:4000]})


def used(tx: Tx, account_id: str, session_id: str) -> None:
    """A turn or an exec just ended: the idle clock starts again."""
    row = kernel.load_for_write(tx, account_id, session_id)
    box = dict(row["sandbox"] or {})
    if box.get("state") == "active":
        box["lastUsedAt"] = tx.now
        _write(tx, row, box, row["sandbox_host"])


def hibernating(tx: Tx, account_id: str, session_id: str) -> bool:
    """Mark an active sandbox ``hibernating``; False when it is not active. Raises
    ``SessionBusy`` while a turn runs (the row says so from the moment the turn is
    claimed, before its runner takes the directory)."""
    row = kernel.load_for_write(tx, account_id, session_id)
    if row["activity"] == "busy":
        raise SessionBusy("a turn runs in this session; hibernate it when the turn ends")
    box = dict(row["sandbox"] or {})
    if box.get("state") != "active":
        return False
    box["state"] = "hibernating"
    _write(tx, row, box, row["sandbox_host"])
    return True


def hibernated(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    reason: str,
    changed: list[str] | None = None,
    skipped: list[dict[str, str]] | None = None,
    home: str | None = None,
) -> None:
    """The directory is gone (its files are in the working tree): ``hibernated``, on no
    host. ``reason``: ``idle``, ``requested``, ``closed`` or ``lost`` (not found at start)."""
    row = kernel.load_for_write(tx, account_id, session_id)
    box = dict(row["sandbox"] or {})
    if box.get("state") in (None, "hibernated"):
        return
    box["state"] = "hibernated"
    _write(tx, row, box, None)
    data: dict[str, Any] = {"reason": reason}
    if changed is not None:
        data["filesChanged"] = changed
    if skipped is not None:
        data["skipped"] = skipped
    if home is not None:
        data["home"] = home
    kernel.emit(tx, row, "sandbox.hibernated", data)


def due(tx: Tx, host: str, now: int, limit: int) -> list[tuple[str, str]]:
    """(account, session) of active sandboxes on ``host`` whose idle time is up."""
    s = t.sessions.c
    q = (
        sa.select(s.account_id, s.id)
        .where(s.sandbox_due <= now, s.sandbox_host == host, s.deleted_at.is_(None))
        .order_by(s.sandbox_due)
        .limit(limit)
    )
    return [(a, i) for a, i in tx.conn.execute(q)]


def hosted(tx: Tx, host: str) -> list[tuple[str, str, str | None, str]]:
    """(account, session, sandbox state, status) of every session whose sandbox is on
    ``host``."""
    s = t.sessions.c
    q = sa.select(s.account_id, s.id, s.sandbox, s.status).where(
        s.sandbox_host == host, s.deleted_at.is_(None)
    )
    return [(a, i, (box or {}).get("state"), status) for a, i, box, status in tx.conn.execute(q)]


def statuses(tx: Tx, session_ids: list[str]) -> dict[str, tuple[str, str]]:
    """``(status, account)`` of each session that still exists (not deleted)."""
    if not session_ids:
        return {}
    s = t.sessions.c
    q = sa.select(s.id, s.status, s.account_id).where(s.id.in_(session_ids), s.deleted_at.is_(None))
    return {i: (status, account) for i, status, account in tx.conn.execute(q)}
