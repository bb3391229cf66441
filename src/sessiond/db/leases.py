"""Job leases: one worker or instance at a time runs a background job.

A job (``"sweeper"``, ``"summaries"``) runs where its lease is held. ``claim`` takes the
lease when it is free or lapsed, or renews it for its holder, in one write transaction:
on SQLite writes are serial; on PostgreSQL the conditional UPDATE locks the row, so two
claimants never both win. A holder that dies stops renewing, and another takes over once
``until`` passed (docs/design/workers.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sessiond.db import tables as t
from sessiond.db.executor import Tx

j = t.job_leases.c


def seconds_for(interval: float) -> float:
    """How long the lease of a job run every ``interval`` seconds lasts: a few intervals
    (its holder renews it every run; when the holder dies, another takes the job over
    after this long)."""
    return max(30.0, 4 * interval)


def claim(tx: Tx, name: str, owner: str, seconds: float) -> bool:
    """True when ``owner`` holds job ``name`` for the next ``seconds`` (taken or renewed)."""
    until = tx.now + int(seconds * 1000)
    taken = tx.conn.execute(
        t.job_leases.update()
        .where(j.name == name, sa.or_(j.owner == owner, j.until < tx.now))
        .values(owner=owner, until=until)
    )
    if taken.rowcount:
        return True
    dialect = postgresql if tx.is_postgres else sqlite
    made = tx.conn.execute(
        dialect.insert(t.job_leases)
        .values(name=name, owner=owner, until=until)
        .on_conflict_do_nothing()
        .returning(j.name)
    )
    return made.first() is not None


def release(tx: Tx, name: str, owner: str) -> None:
    """Let go of the lease (a clean stop): another may take it at once."""
    tx.conn.execute(t.job_leases.delete().where(j.name == name, j.owner == owner))


def holder(tx: Tx, name: str) -> tuple[str, int] | None:
    """(owner, until) of job ``name``'s lease, if any (lapsed or not)."""
    row = tx.conn.execute(sa.select(j.owner, j.until).where(j.name == name)).first()
    return (row.owner, row.until) if row else None
