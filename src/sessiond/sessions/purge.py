"""The purge of deleted sessions: their rows go in bounded steps, the session row last.

``DELETE /v1/sessions/{id}`` only marks the row (``deleted_at``): from that commit on the
session answers 404 everywhere. The sweeper then calls ``purge_step`` until it returns 0
(docs/design/deletion.md). Each step is one transaction that claims one deleted session
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two instances never purge the same one at
once; SQLite has one writer) and deletes at most ``batch`` rows per statement of each
table that holds its rows. Every statement is idempotent and a row that others need is
deleted only after what depends on it, so a step killed half-way leaves a state the next
one finishes: the refs of a branch go after its messages, the session row after all.
"""

from __future__ import annotations

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.memory import service as memories

# Rows that belong to one session and go with it (messages go through their refs).
SESSION_OWNED = (
    t.session_tags,
    t.tasks,
    t.notes,
    t.annotations_table,
    t.approvals,
    t.cache_entries,
    t.checkpoints,
    t.commits,
    t.turns,
    t.sandbox_homes,
    t.agent_leases,
)
# The one event of a deleted session that stays: account-wide streams see the deletion.
DELETED = "session.deleted"


def purge_step(tx: Tx, *, batch: int) -> int:
    """One step of the purge of the oldest deleted session: how many rows it deleted
    (the session row counts as one), 0 when no deleted session is left to claim."""
    s = t.sessions.c
    q = sa.select(s.id, s.account_id).where(s.deleted_at.is_not(None))
    q = q.order_by(s.deleted_at, s.id).limit(1)
    if tx.is_postgres:
        q = q.with_for_update(skip_locked=True)
    found = tx.conn.execute(q).first()
    if found is None:
        return 0
    session_id, account_id = found
    done = 0
    for table in SESSION_OWNED:
        done += _delete_some(tx, table, session_id, batch)
    e = t.events.c
    ids = sa.select(e.id).where(e.session_id == session_id, e.type != DELETED).limit(batch)
    done += _count(tx.conn.execute(t.events.delete().where(e.id.in_(ids.scalar_subquery()))))
    done += _release_some(tx, session_id, batch)
    if done:
        return done
    # Nothing else is left: whatever memory a racing writer got in (none expected: every
    # write 404s from the mark on), then the row itself.
    memories.delete_for_session(tx, account_id, session_id)
    tx.conn.execute(t.sessions.delete().where(s.id == session_id))
    return 1


def _count(result: sa.CursorResult[object]) -> int:
    return int(result.rowcount or 0)


def _delete_some(tx: Tx, table: sa.Table, session_id: str, batch: int) -> int:
    """Up to ``batch`` of the session's rows of ``table``."""
    mine = table.c.session_id == session_id
    others = [c for c in table.primary_key.columns if c.name != "session_id"]
    if not others:  # keyed by the session: one row at most
        return _count(tx.conn.execute(table.delete().where(mine)))
    (key,) = others
    some = sa.select(key).where(mine).limit(batch).scalar_subquery()
    return _count(tx.conn.execute(table.delete().where(mine, key.in_(some))))


def _release_some(tx: Tx, session_id: str, batch: int) -> int:
    """Drop the session's branch refs; a branch nobody else shows loses its messages
    first, ``batch`` at most per step, and its ref only once none is left.

    The refs of a branch are locked (PostgreSQL) before "does anyone else show it?" is
    asked, so two sessions sharing a branch and purged at once by two instances cannot
    both leave it to the other."""
    r = t.conversation_refs.c
    m = t.messages.c
    mine = list(
        tx.conn.execute(
            sa.select(r.branch_id)
            .where(r.session_id == session_id)
            .order_by(r.branch_id)
            .limit(batch)
        ).scalars()
    )
    done, budget = 0, batch
    for branch in mine:
        q = sa.select(r.session_id).where(r.branch_id == branch)
        holders = set(tx.conn.execute(q.with_for_update() if tx.is_postgres else q).scalars())
        ref = t.conversation_refs.delete().where(r.branch_id == branch, r.session_id == session_id)
        if holders - {session_id}:
            done += _count(tx.conn.execute(ref))
            continue
        some = sa.select(m.id).where(m.branch_id == branch).limit(budget).scalar_subquery()
        deleted = _count(tx.conn.execute(t.messages.delete().where(m.id.in_(some))))
        done += deleted
        if deleted == budget:  # perhaps more: the next step goes on with this branch
            return done
        budget -= deleted
        done += _count(tx.conn.execute(ref))
    return done
