"""Fork: a new session that starts from another's state — O(1), nothing copied.

The child shares the parent's git objects (same account) and message rows (its
conversation is a cut of the parent's path); its own writes go to its own tree and its
own branch, so neither side ever sees the other's later changes.
"""

from __future__ import annotations

from typing import Any

from sessiond.conversation import messages
from sessiond.conversation import path as P
from sessiond.db.executor import Tx
from sessiond.errors import ValidationFailed
from sessiond.files.objects import ObjectStore
from sessiond.sessions import kernel
from sessiond.sessions import service as sessions
from sessiond.sessions.models import SessionCreate
from sessiond.settings import Limits
from sessiond.tasks import service as tasks
from sessiond.versions import checkpoints
from sessiond.versions.record import take


def fork(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    *,
    checkpoint_id: str | None = None,
    message_id: str | None = None,
    title: str | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Create the fork; returns the child's row. From a checkpoint: its state. From a
    message: the state just before it (as a revert would leave it). From neither: the
    parent's current state, recorded as a checkpoint of the parent first."""
    if checkpoint_id is not None and message_id is not None:
        raise ValidationFailed(
            [{"field": "messageId", "message": "give checkpointId or messageId, not both"}]
        )
    ObjectStore(tx, account_id)  # holds off garbage collection until this commits
    parent = kernel.load_for_write(tx, account_id, session_id)
    if checkpoint_id is not None:
        state = checkpoints.get_row(tx, account_id, session_id, checkpoint_id)
        conversation = state["conversation"]
    elif message_id is not None:
        seq, found = checkpoints.state_before(tx, account_id, parent, message_id)
        conversation = P.cut(parent["conversation"], seq - 1)
        state = found if found is not None else _current(tx, parent)
        checkpoint_id = found["id"] if found is not None else None
    else:
        recorded = take(tx, parent, label="fork", auto=True)
        checkpoint_id = recorded["id"]
        state = _current(tx, parent)
        conversation = parent["conversation"]
    spec = SessionCreate(
        title=title if title is not None else parent["title"],
        workspace_id=parent["workspace_id"],
        tags=tags if tags is not None else list(parent["tags"]),
        metadata=parent["metadata"],
        context=state["context"],
        agent=parent["agent"],
        model=parent["model"],
        mode=parent["mode"],
    )
    child = sessions.create(tx, limits, account_id, spec)
    ws = dict(child["workspace"], head=state["tree"], base=state["tree"])
    kernel.write_fields(
        tx,
        child,
        {
            "parent_id": session_id,
            "forked_from": {"sessionId": session_id, "checkpointId": checkpoint_id},
            "workspace": ws,
            "commit_head": parent["commit_head"],
        },
    )
    messages.move_head(tx, child, conversation)
    tasks.replace_from_state(tx, child, state["tasks"], keep_ids=False)
    tx.emit(
        account_id,
        "session.forked",
        {"childId": child["id"], "checkpointId": checkpoint_id, "messageId": message_id},
        session_id=session_id,
        workspace_id=parent["workspace_id"],
    )
    return child


def _current(tx: Tx, row: dict[str, Any]) -> dict[str, Any]:
    """The parent's state now, in a checkpoint's shape (what a fork needs of it)."""
    return {
        "tree": row["workspace"]["head"],
        "context": row["context"],
        "tasks": tasks.list_for_session(tx, row["id"]),
    }
