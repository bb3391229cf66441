"""pgvector on PostgreSQL: vectors scored by the database when ``CREATE EXTENSION vector``
works (docs/design/memory.md, decision 4).

``enable`` runs once at start: it creates the extension if the server has it and the
role may, and adds ``memory_vectors.embedding vector`` (idempotent DDL). From then on
every stored vector also gets its ``embedding``, and search orders by cosine distance
(``<=>``) in SQL with every filter in the same statement. Rows written before (no
``embedding`` yet) are filled from their float32 bytes by ``backfill``. Without the
extension nothing changes: the in-process matrices do the scoring.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from sessiond.db import tables as t
from sessiond.db.executor import Tx

log = logging.getLogger("sessiond.memory")


class Vector(sa.types.UserDefinedType[Any]):
    """pgvector's ``vector`` type (any dimensions), for casts."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"


def literal(vector: np.ndarray) -> str:
    """A vector as pgvector's text form, ``[0.1,0.2,...]``."""
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def enable(tx: Tx) -> bool:
    """True when pgvector is in use (PostgreSQL with the extension available)."""
    if not tx.is_postgres:
        return False
    available = tx.conn.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).first()
    if available is None:
        log.info("memory: no pgvector on this PostgreSQL; vectors are scored in-process")
        return False
    try:
        with tx.conn.begin_nested():
            tx.conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
            tx.conn.execute(
                sa.text("ALTER TABLE memory_vectors ADD COLUMN IF NOT EXISTS embedding vector")
            )
    except DBAPIError as e:
        log.warning("memory: pgvector could not be enabled (%s); vectors are scored in-process", e)
        return False
    log.info("memory: vectors are scored by pgvector")
    return True


def store(tx: Tx, seq: int, vector: np.ndarray) -> None:
    tx.conn.execute(
        sa.text("UPDATE memory_vectors SET embedding = CAST(:e AS vector) WHERE seq = :s"),
        {"e": literal(vector), "s": seq},
    )


def backfill(tx: Tx, limit: int) -> int:
    """Fill ``embedding`` of up to ``limit`` rows written without it; returns how many."""
    rows = tx.conn.execute(
        sa.text("SELECT seq, vector FROM memory_vectors WHERE embedding IS NULL LIMIT :n"),
        {"n": limit},
    ).all()
    for row in rows:
        store(tx, row.seq, np.frombuffer(row.vector, dtype=np.float32))
    return len(rows)


def ranking(
    tx: Tx, account_id: str, model: str, query: np.ndarray, where: list[Any], limit: int
) -> list[int]:
    """The nums of the ``limit`` items nearest to ``query`` among those ``where`` lets
    through (the memories-side filters), by cosine distance."""
    m, v = t.memories, t.memory_vectors
    embedding: Any = sa.literal_column("memory_vectors.embedding")
    distance = embedding.op("<=>")(sa.cast(sa.literal(literal(query)), Vector()))
    select = (
        sa.select(m.c.num)
        .select_from(v.join(m, m.c.num == v.c.memory_num))
        .where(
            v.c.account_id == account_id,
            v.c.model == model,
            v.c.dims == int(query.shape[0]),
            embedding.is_not(None),
            *where,
        )
        .order_by(distance, m.c.num)
        .limit(limit)
    )
    return [r.num for r in tx.conn.execute(select)]
