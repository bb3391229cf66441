"""Checkpoints, restore, revert and unrevert: O(1) in files and messages.

A checkpoint records the tree sha, the conversation path, the context, the task list and
the per-path change figures — ids and small JSON. Restoring one points the session back
at them: no file or message row is copied or deleted (docs/design/workspace.md).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sessiond.conversation import messages
from sessiond.conversation import path as P
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import InvalidTransition, invalid
from sessiond.files import trees
from sessiond.files.diff import checkpoint_not_found
from sessiond.files.objects import ObjectStore
from sessiond.files.stats import line_delta
from sessiond.pagination import keyset
from sessiond.sessions import figures, kernel
from sessiond.tasks import service as tasks
from sessiond.versions.record import COMPACTION_LABEL, render, take

cp = t.checkpoints
SCOPES = ("all", "files", "conversation")
LABEL_CHARS = 200
DESCRIPTION_CHARS = 10_000


def create(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    label: str | None,
    description: str | None,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    if label is not None and len(label) > LABEL_CHARS:
        raise invalid("label", f"at most {LABEL_CHARS} characters")
    if description is not None and len(description) > DESCRIPTION_CHARS:
        raise invalid("description", f"at most {DESCRIPTION_CHARS} characters")
    row = kernel.lock_active(tx, account_id, session_id, if_match=if_match, full=True)
    return take(tx, row, label=label, description=description)


def get_row(tx: Tx, account_id: str, session_id: str, checkpoint_id: str) -> dict[str, Any]:
    """The checkpoint row (404 unless it is one of this session's)."""
    return kernel.fetch_one(tx, cp, account_id, session_id, checkpoint_id, checkpoint_not_found)


def get(tx: Tx, account_id: str, session_id: str, checkpoint_id: str) -> dict[str, Any]:
    kernel.require_exists(tx, account_id, session_id)
    return render(get_row(tx, account_id, session_id, checkpoint_id))


def list_page(
    tx: Tx, account_id: str, session_id: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The session's checkpoints, newest first."""
    kernel.require_exists(tx, account_id, session_id)
    q = sa.select(cp).where(cp.c.session_id == session_id, cp.c.account_id == account_id)
    rows, next_cursor = keyset(
        tx, q, cp.c.id, "checkpoints", limit=limit, cursor=cursor, descending=True
    )
    return [render(r) for r in rows], next_cursor


# -- restoring state -----------------------------------------------------------------------


def _set_files(tx: Tx, row: dict[str, Any], state: dict[str, Any]) -> bool:
    """Point the working tree at the state's tree; its change figures come with it."""
    ws = dict(row["workspace"])
    if ws["head"] == state["tree"]:
        return False
    store = ObjectStore(tx, row["account_id"])
    if state["base"] == ws["base"]:
        counts = state["figures"]
    else:  # the base moved since (rare): recompute from the trees
        files = added = removed = 0
        for _path, a, b in trees.diff(store, ws["base"], state["tree"]):
            old = store.get(a[1]).as_raw_string() if a else b""
            new = store.get(b[1]).as_raw_string() if b else b""
            more, fewer = line_delta(old, new)
            files, added, removed = files + 1, added + more, removed + fewer
        counts = figures.counts(files, added, removed)
    paths = [path for path, _a, _b in trees.diff(store, ws["head"], state["tree"])]
    ws.update(head=state["tree"], **counts)
    kernel.write_fields(tx, row, {"workspace": ws})
    tx.emit(
        row["account_id"],
        "files.changed",
        {"paths": paths, "workspace": ws, "reason": "restore"},
        session_id=row["id"],
        workspace_id=row["workspace_id"],
    )
    return True


def _set_state(tx: Tx, row: dict[str, Any], state: dict[str, Any]) -> None:
    """Context and task list from the state."""
    if row["context"] != state["context"]:
        kernel.write_fields(
            tx,
            row,
            {
                "context": state["context"],
                "lifecycle_version": row["lifecycle_version"] + 1,
                "updated_at": tx.now,
            },
        )
    tasks.replace_from_state(tx, row, state["tasks"])


def apply_state(
    tx: Tx, row: dict[str, Any], state: dict[str, Any], scope: str, conversation: P.Path
) -> None:
    if scope in ("all", "files"):
        _set_files(tx, row, state)
    if scope in ("all", "conversation"):
        messages.move_head(tx, row, conversation)
    if scope == "all":
        _set_state(tx, row, state)
    kernel.touch(tx, row)


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise invalid("scope", "one of all, files, conversation")


def restore(
    tx: Tx,
    account_id: str,
    session_id: str,
    checkpoint_id: str,
    scope: str,
    *,
    if_match: int | str | None = None,
) -> tuple[dict[str, Any], str]:
    """Restore a checkpoint (after recording the current state). Returns the session row
    and the id of the undo checkpoint."""
    _check_scope(scope)
    row = kernel.lock_active(tx, account_id, session_id, if_match=if_match, full=True)
    state = get_row(tx, account_id, session_id, checkpoint_id)
    undo = take(tx, row, label="before restore", auto=True)
    apply_state(tx, row, state, scope, state["conversation"])
    kernel.emit(
        tx,
        row,
        "session.restored",
        {"checkpointId": checkpoint_id, "scope": scope, "undoCheckpointId": undo["id"]},
    )
    return row, undo["id"]


def state_before(
    tx: Tx, account_id: str, row: dict[str, Any], message_id: str
) -> tuple[int, dict[str, Any] | None]:
    """``(seq of the message, the checkpoint holding the state just before it or None)``.

    A user message has the automatic checkpoint taken right before it; for another
    message, the automatic checkpoint of the closest user message before it is used.
    Messages are shared by forks, so the checkpoint is looked up by message across the
    account, not by session: a fork reverting to a message its parent appended finds the
    parent's record of the state before it. The path is read backwards in growing
    batches, so the usual case (the message, or one a few before it) costs one query.
    """
    path = row["conversation"]
    seq = messages.seq_of(tx, account_id, path, message_id)
    last, batch = seq, 4
    while last >= 1:
        first = max(1, last - batch + 1)
        at = {r.id: s for s, r in messages.fetch_range(tx, account_id, path, first, last)}
        found = tx.conn.execute(
            sa.select(cp).where(
                cp.c.account_id == account_id,
                cp.c.before_message_id.in_(at),
                kernel.shown(cp.c.session_id, account_id),
            )
        ).all()
        if found:
            best = max(found, key=lambda f: at[f.before_message_id])
            return seq, dict(best._mapping)
        last, batch = first - 1, min(batch * 4, 256)
    return seq, None


def _compacted_before(state: dict[str, Any] | None, message_id: str) -> bool:
    """Whether ``state`` is the checkpoint a compaction recorded before ``message_id``
    (its summary message: docs/design/compaction.md)."""
    return (
        state is not None
        and state["auto"]
        and state["label"] == COMPACTION_LABEL
        and state["before_message_id"] == message_id
    )


def revert(
    tx: Tx,
    account_id: str,
    session_id: str,
    message_id: str,
    scope: str,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """The state as it was just before ``message_id``; the message leaves the path."""
    _check_scope(scope)
    row = kernel.lock_active(tx, account_id, session_id, if_match=if_match, full=True)
    seq, state = state_before(tx, account_id, row, message_id)
    undo = take(tx, row, label="before revert", auto=True)
    conversation = P.cut(row["conversation"], seq - 1)
    if _compacted_before(state, message_id):
        # A compaction summary: just before it, the conversation was the uncompacted one.
        conversation = state["conversation"]  # type: ignore[index]
    if state is None:  # no recorded state before it: only the conversation moves
        if scope in ("all", "conversation"):
            messages.move_head(tx, row, conversation)
    else:
        apply_state(tx, row, state, scope, conversation)
    kernel.write_fields(tx, row, {"revert_undo": undo["id"]})
    kernel.emit(
        tx,
        row,
        "session.reverted",
        {"messageId": message_id, "scope": scope, "undoCheckpointId": undo["id"]},
    )
    return row


def unrevert(
    tx: Tx, account_id: str, session_id: str, *, if_match: int | str | None = None
) -> dict[str, Any]:
    """Undo the last revert: back to the state recorded just before it."""
    row = kernel.lock_active(tx, account_id, session_id, if_match=if_match, full=True)
    if row["revert_undo"] is None:
        raise InvalidTransition("nothing to unrevert: no revert since the last unrevert")
    state = get_row(tx, account_id, session_id, row["revert_undo"])
    apply_state(tx, row, state, "all", state["conversation"])
    kernel.write_fields(tx, row, {"revert_undo": None})
    kernel.emit(tx, row, "session.reverted", {"undone": True, "checkpointId": state["id"]})
    return row
