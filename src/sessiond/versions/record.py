"""Recording a checkpoint (kept apart from ``checkpoints`` so that appending a user
message, which records one, does not import the restore machinery)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sessiond.conversation import path as P
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.ids import iso, new_id
from sessiond.sessions import figures
from sessiond.tasks import service as tasks

cp = t.checkpoints
# The label of the checkpoint a compaction records just before its summary message
# (``versions.compact``; ``checkpoints.revert`` of that message restores its conversation).
COMPACTION_LABEL = "before compaction"


def render(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sessionId": row["session_id"],
        "label": row["label"],
        "description": row["description"],
        "tree": row["tree"],
        "messageId": row["message_id"],
        "auto": row["auto"],
        "createdAt": iso(row["created_at"]),
    }


def _head_message(tx: Tx, path: P.Path) -> str | None:
    where = P.at_seq(path, P.count(path))
    if where is None:
        return None
    return tx.conn.execute(
        sa.select(t.messages.c.id).where(
            t.messages.c.branch_id == where[0], t.messages.c.bseq == where[1]
        )
    ).scalar_one_or_none()


def take(
    tx: Tx,
    row: dict[str, Any],
    *,
    label: str | None = None,
    description: str | None = None,
    auto: bool = False,
    before_message_id: str | None = None,
    head_message_id: str | None = None,
) -> dict[str, Any]:
    """Record the session's state now (``row``: the full, locked session row).
    ``head_message_id``: the conversation's last message, when the caller knows it."""
    ws = row["workspace"]
    values = {
        "id": new_id("cp"),
        "account_id": row["account_id"],
        "session_id": row["id"],
        "label": label,
        "description": description,
        "tree": ws["head"],
        "base": ws["base"],
        "conversation": row["conversation"],
        "message_id": head_message_id or _head_message(tx, row["conversation"]),
        "before_message_id": before_message_id,
        "context": row["context"],
        "tasks": [
            {
                "id": x["id"],
                "content": x["content"],
                "status": x["status"],
                "priority": x["priority"],
            }
            for x in tasks.list_for_session(tx, row["id"])
        ],
        "figures": figures.of(ws),
        "auto": auto,
        "created_at": tx.now,
    }
    tx.conn.execute(cp.insert(), values)
    checkpoint = render(values)
    tx.emit(
        row["account_id"],
        "checkpoint.created",
        {"checkpoint": checkpoint},
        session_id=row["id"],
        workspace_id=row["workspace_id"],
    )
    return checkpoint
