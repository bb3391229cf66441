"""Which conversation branches a session shows (its refs).

Messages are shared by forks, so a message row goes only when no session shows its
branch: the purge of a deleted session (``sessions.purge``) drops its refs, and the
messages of a branch nobody else shows first.
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
