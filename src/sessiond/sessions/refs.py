"""Which conversation branches a session shows (its refs), and their release on delete.

Messages are shared by forks, so a message row goes only when no session shows its
branch. The refs belong to the session row, so deleting a session needs nothing above it.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx


def add_refs(tx: Tx, session_id: str, branch_ids: Iterable[str]) -> None:
    """Record that ``session_id`` shows these branches (already-recorded ones are skipped)."""
    wanted = set(branch_ids)
    if not wanted:
        return
    refs = t.conversation_refs
    have = set(
        tx.conn.execute(
            sa.select(refs.c.branch_id).where(
                refs.c.session_id == session_id, refs.c.branch_id.in_(wanted)
            )
        ).scalars()
    )
    missing = wanted - have
    if missing:
        tx.conn.execute(
            refs.insert(), [{"branch_id": b, "session_id": session_id} for b in sorted(missing)]
        )


def release(tx: Tx, session_id: str) -> int:
    """Drop ``session_id``'s references; delete the messages of branches no one shows now.

    Returns how many message rows were deleted.
    """
    refs = t.conversation_refs
    mine = list(
        tx.conn.execute(
            sa.select(refs.c.branch_id).where(refs.c.session_id == session_id)
        ).scalars()
    )
    if not mine:
        return 0
    tx.conn.execute(refs.delete().where(refs.c.session_id == session_id))
    deleted = 0
    for i in range(0, len(mine), 500):
        chunk = mine[i : i + 500]
        still = set(
            tx.conn.execute(
                sa.select(refs.c.branch_id).where(refs.c.branch_id.in_(chunk)).distinct()
            ).scalars()
        )
        free = [b for b in chunk if b not in still]
        if free:
            result = tx.conn.execute(t.messages.delete().where(t.messages.c.branch_id.in_(free)))
            deleted += int(result.rowcount or 0)
    return deleted
