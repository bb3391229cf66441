"""Hybrid search: full-text ranking fused with vector similarity (reciprocal rank fusion).

Both sides rank only items that pass every filter — account, exact namespace, session,
workspace, exact-match metadata, not expired — so a filter never empties a top-k cut
made before it (docs/design/memory.md). Each side ranks up to ``candidates(topK)``
items; a match's score is Σ 1/(60 + rank) over the sides that found it.

Full text: SQLite FTS5 (``bm25``), PostgreSQL ``tsvector`` ('simple' configuration,
``ts_rank``). The query's words are matched with OR (an item needs one of them; more
and rarer ones rank higher): a question in natural language finds what shares its
important words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import ValidationFailed, invalid
from sessiond.memory import pgvector, service
from sessiond.memory.index import VectorIndex
from sessiond.memory.models import QUERY_CHARS, TOP_K_MAX

RRF_K = 60
MAX_TERMS = 32
# SQLite: the query's words are taken rarest first while their document counts add up
# to at most this (the rarest always): ranking a word found in most items costs a
# bm25 per item (~50 ms per 20,000), and such a word barely moves the ranking.
POSTINGS_BUDGET = 5000
METADATA_KEY = re.compile(r'[^"\\\x00-\x1f]{1,200}')
m = t.memories
WORD = re.compile(r"\w+")


def candidates(top_k: int) -> int:
    return max(top_k * 4, 50)


@dataclass(frozen=True)
class Filters:
    namespace: str | None = None
    session_id: str | None = None
    workspace_id: str | None = None
    metadata: dict[str, Any] | None = None


def check_query(query: str, top_k: int) -> None:
    if not query.strip():
        raise invalid("query", "may not be empty")
    if len(query) > QUERY_CHARS:
        raise invalid("query", f"at most {QUERY_CHARS} characters")
    if not 1 <= top_k <= TOP_K_MAX:
        raise invalid("topK", f"must be between 1 and {TOP_K_MAX}")


def check_metadata_filter(value: Any) -> dict[str, Any] | None:
    """Exact-match filters: an object of at most 20 keys, each a JSON scalar."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("metadata", "must be an object of exact-match filters")
    if len(value) > 20:
        raise invalid("metadata", "at most 20 filters")
    errors = []
    for key, item in value.items():
        if not METADATA_KEY.fullmatch(key):
            errors.append(
                {
                    "field": f"metadata.{key}",
                    "message": "a key without quotes, "
                    "backslashes or control characters, 1 to 200 characters",
                }
            )
        elif isinstance(item, (dict, list)):
            errors.append(
                {
                    "field": f"metadata.{key}",
                    "message": "a filter is a string, number, boolean or null (exact match)",
                }
            )
    if errors:
        raise ValidationFailed(errors)
    return value


def _metadata_clause(tx: Tx, key: str, value: Any) -> Any:
    if tx.is_postgres:
        wanted = sa.cast(sa.literal(json.dumps({key: value})), JSONB)
        return sa.cast(m.c.metadata, JSONB).op("@>")(wanted)
    path = f'$."{key}"'
    kind = sa.func.json_type(m.c.metadata, path)
    if value is None:
        return kind == "null"
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    extracted = sa.func.json_extract(m.c.metadata, path)
    if isinstance(value, (int, float)):
        return sa.and_(kind.in_(("integer", "real")), extracted == value)
    return sa.and_(kind == "text", extracted == value)


def _where(tx: Tx, account_id: str, filters: Filters) -> list[Any]:
    clauses: list[Any] = [
        m.c.account_id == account_id,
        sa.or_(m.c.expires_at.is_(None), m.c.expires_at > tx.now),
    ]
    if filters.namespace is not None:
        clauses.append(m.c.namespace == filters.namespace)
    if filters.session_id is not None:
        clauses.append(m.c.session_id == filters.session_id)
    if filters.workspace_id is not None:
        clauses.append(m.c.workspace_id == filters.workspace_id)
    for key, value in (filters.metadata or {}).items():
        clauses.append(_metadata_clause(tx, key, value))
    return clauses


def terms(query: str) -> list[str]:
    seen: list[str] = []
    for word in WORD.findall(query.lower()):
        if word not in seen:
            seen.append(word)
        if len(seen) == MAX_TERMS:
            break
    return seen


def _affordable(tx: Tx, words: list[str]) -> list[str]:
    """The words worth matching (SQLite): rarest first within ``POSTINGS_BUDGET``."""
    vocab = sa.table("memories_fts_vocab", sa.column("term"), sa.column("doc"))
    counts = dict(
        tx.conn.execute(sa.select(vocab.c.term, vocab.c.doc).where(vocab.c.term.in_(words))).all()
    )
    kept: list[str] = []
    spent = 0
    for word in sorted(words, key=lambda w: counts.get(w, 0)):
        spent += counts.get(word, 0)
        if kept and spent > POSTINGS_BUDGET:
            break
        kept.append(word)
    return kept


def text_ranking(tx: Tx, account_id: str, query: str, filters: Filters, limit: int) -> list[int]:
    words = terms(query)
    if not words:
        return []
    if tx.is_postgres:
        tsv: Any = sa.literal_column("memories.tsv")
        tsq = sa.func.to_tsquery("simple", " | ".join(words))
        select = (
            sa.select(m.c.num)
            .where(tsv.op("@@")(tsq), *_where(tx, account_id, filters))
            .order_by(sa.func.ts_rank(tsv, tsq).desc(), m.c.num)
        )
    else:
        fts = sa.table("memories_fts", sa.column("rowid"))
        match = " OR ".join(f'"{w}"' for w in _affordable(tx, words))
        select = (
            sa.select(m.c.num)
            .select_from(m.join(fts, fts.c.rowid == m.c.num))
            .where(
                sa.literal_column("memories_fts").op("MATCH")(match),
                *_where(tx, account_id, filters),
            )
            .order_by(sa.func.bm25(sa.literal_column("memories_fts")), m.c.num)
        )
    return [r.num for r in tx.conn.execute(select.limit(limit))]


def vector_ranking(
    tx: Tx,
    index: VectorIndex,
    account_id: str,
    model: str,
    query: np.ndarray,
    filters: Filters,
    limit: int,
) -> list[int]:
    if index.native:
        return pgvector.ranking(
            tx, account_id, model, query, _where(tx, account_id, filters), limit
        )
    allowed = None
    if filters.metadata:
        allowed = {
            r.num
            for r in tx.conn.execute(sa.select(m.c.num).where(*_where(tx, account_id, filters)))
        }
    return index.search(
        tx,
        account_id,
        model,
        query,
        limit=limit,
        namespace=filters.namespace,
        session_id=filters.session_id,
        workspace_id=filters.workspace_id,
        allowed=allowed,
    )


def fuse(rankings: dict[str, list[int]], top_k: int) -> list[tuple[int, float, dict[str, int]]]:
    """``(num, score, {side: rank})`` of the ``top_k`` best by reciprocal rank fusion;
    ties go to the item filed first."""
    ranks: dict[int, dict[str, int]] = {}
    for side, nums in rankings.items():
        for rank, num in enumerate(nums, start=1):
            ranks.setdefault(num, {})[side] = rank
    scored = [(num, sum(1 / (RRF_K + r) for r in by.values()), by) for num, by in ranks.items()]
    scored.sort(key=lambda s: (-s[1], s[0]))
    return scored[:top_k]


def search(
    tx: Tx,
    index: VectorIndex,
    account_id: str,
    query: str,
    filters: Filters,
    *,
    top_k: int,
    mode: str,
    model: str | None,
    query_vector: np.ndarray | None,
) -> dict[str, Any]:
    """``{"mode", "matches"}``; ``mode`` is what was used (``text`` when no vector of the
    query could be made, whatever was asked)."""
    limit = candidates(top_k)
    used = mode if model is not None and query_vector is not None else "text"
    rankings: dict[str, list[int]] = {}
    if used in ("hybrid", "text"):
        rankings["text"] = text_ranking(tx, account_id, query, filters, limit)
    if used in ("hybrid", "vector"):
        assert model is not None and query_vector is not None
        rankings["vector"] = vector_ranking(
            tx, index, account_id, model, query_vector, filters, limit
        )
    # Fetch every candidate with the filters again: an item deleted or expired since a
    # matrix was built is dropped here, before the top-k cut.
    nums = {num for ranked in rankings.values() for num in ranked}
    rows: dict[int, dict[str, Any]] = {}
    if nums:
        select = service.select_rendered(model).where(
            m.c.num.in_(sorted(nums)), *_where(tx, account_id, filters)
        )
        for row in tx.conn.execute(select):
            rows[row.num] = service.rendered(row, model)
    live = {side: [n for n in ranked if n in rows] for side, ranked in rankings.items()}
    matches = [
        {
            "memory": rows[num],
            "score": round(score, 8),
            "textRank": by.get("text"),
            "vectorRank": by.get("vector"),
        }
        for num, score, by in fuse(live, top_k)
    ]
    return {"mode": used, "matches": matches}
