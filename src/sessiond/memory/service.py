"""Memory items: create, read, list, change, delete — and the session summary memory.

Every item belongs to one account; its namespace, session and workspace are what it was
filed under and never change. Vectors live in ``memory_vectors`` keyed by (item, model):
a write that changes an item's text either stores the new text's vector in the same
transaction (the caller embedded it first, outside any transaction) or drops the item's
vectors, which the embedding job (``memory.jobs``) makes again. Dropping vectors or
items bumps the account's generation, so every instance rebuilds its vector matrix
(``memory.index``) instead of scoring a stale vector.

Writes emit ``memory.created|updated|deleted`` (with the session's id when the item has
one, so a session's stream shows its memories).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import Conflict, NotFound, invalid
from sessiond.ids import iso, new_id
from sessiond.memory import pgvector
from sessiond.memory.models import (
    MAX_TTL_SECONDS,
    NAMESPACE_PATTERN,
    SUMMARY_NAMESPACE,
    MemoryCreate,
    MemoryPatch,
)
from sessiond.pagination import keyset
from sessiond.workspaces import service as workspaces

m = t.memories
v = t.memory_vectors
NAMESPACE = re.compile(NAMESPACE_PATTERN)


@dataclass(frozen=True)
class MemoryLimits:
    text_chars: int
    metadata_bytes: int
    per_account: int


@dataclass(frozen=True)
class Embedded:
    """A vector made for a text by ``model`` (normalized float32)."""

    model: str
    vector: np.ndarray
    native: bool = False  # also store it for pgvector (``memory.pgvector``)

    @property
    def dims(self) -> int:
        return int(self.vector.shape[0])


def not_found(memory_id: str) -> NotFound:
    return NotFound(f"memory {memory_id} not found")


def render(row: Any, embedding: tuple[str, int] | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "namespace": row["namespace"],
        "text": row["text"],
        "metadata": row["metadata"],
        "sessionId": row["session_id"],
        "workspaceId": row["workspace_id"],
        "embedding": {"model": embedding[0], "dims": embedding[1]} if embedding else None,
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "expiresAt": iso(row["expires_at"]),
    }


def select_rendered(model: str | None) -> sa.Select[Any]:
    """Items with their vector's dims under ``model`` (null: none yet, or no model)."""
    if not model:
        return sa.select(m, sa.null().label("dims"))
    joined = m.outerjoin(v, sa.and_(v.c.memory_num == m.c.num, v.c.model == model))
    return sa.select(m, v.c.dims).select_from(joined)


def rendered(row: Any, model: str | None) -> dict[str, Any]:
    mapping = getattr(row, "_mapping", row)  # a Row, or the mapping a keyset page gives
    dims = mapping["dims"]
    return render(mapping, (model, dims) if model and dims is not None else None)


def _live(tx: Tx) -> Any:
    return sa.or_(m.c.expires_at.is_(None), m.c.expires_at > tx.now)


def note_change(tx: Tx, account_id: str, *, items: int = 0, vectors_lost: bool = True) -> None:
    """Keep the account's row of ``memory_generations`` true: ``items`` more (or fewer)
    items, and — when vectors were lost — a new generation, so every instance rebuilds
    its matrix instead of appending to it."""
    g = t.memory_generations
    bump = int(vectors_lost)
    updated = tx.conn.execute(
        g.update()
        .where(g.c.account_id == account_id)
        .values(generation=g.c.generation + bump, item_count=g.c.item_count + items)
    )
    if updated.rowcount == 0:
        tx.conn.execute(
            g.insert(), {"account_id": account_id, "generation": bump, "item_count": items}
        )


def bump_generation(tx: Tx, account_id: str) -> None:
    """The account's vectors lost rows (rebuild, not append)."""
    note_change(tx, account_id)


def generation(tx: Tx, account_id: str) -> int:
    value = tx.conn.execute(
        sa.select(t.memory_generations.c.generation).where(
            t.memory_generations.c.account_id == account_id
        )
    ).scalar()
    return int(value or 0)


def check_text(limits: MemoryLimits, text: str) -> str:
    if not text.strip():
        raise invalid("text", "may not be empty")
    if len(text) > limits.text_chars:
        raise invalid("text", f"at most {limits.text_chars} characters")
    return text


def _check_metadata(limits: MemoryLimits, value: Any) -> dict[str, Any]:
    import json

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("metadata", "must be a JSON object")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limits.metadata_bytes:
        raise invalid("metadata", f"at most {limits.metadata_bytes} bytes of JSON")
    return value


def _check_ttl(ttl: int | None) -> None:
    if ttl is not None and not 1 <= ttl <= MAX_TTL_SECONDS:
        raise invalid("ttlSeconds", f"must be between 1 and {MAX_TTL_SECONDS} seconds, or null")


def check_namespace(namespace: str, field: str = "namespace") -> str:
    if not NAMESPACE.fullmatch(namespace):
        raise invalid(
            field, "a namespace is 1 to 128 of [a-z0-9._-], starting with a letter or digit"
        )
    return namespace


def _session_workspace(tx: Tx, account_id: str, session_id: str) -> str:
    workspace = tx.conn.execute(
        sa.select(t.sessions.c.workspace_id).where(
            t.sessions.c.account_id == account_id,
            t.sessions.c.id == session_id,
            t.sessions.c.deleted_at.is_(None),
        )
    ).scalar()
    if workspace is None:
        raise NotFound(f"session {session_id} not found")
    return str(workspace)


def _store_vector(tx: Tx, account_id: str, num: int, embedded: Embedded) -> None:
    """The item's vector under ``embedded.model``; its vectors of other models go (the
    job re-embeds after a model change; search reads the configured model only). A new
    row each time: its ``seq`` is what the matrices read past (``memory.index``)."""
    tx.order_commits()
    tx.conn.execute(v.delete().where(v.c.memory_num == num))
    seq = tx.conn.execute(
        v.insert().returning(v.c.seq),
        {
            "memory_num": num,
            "model": embedded.model,
            "account_id": account_id,
            "dims": embedded.dims,
            "vector": np.ascontiguousarray(embedded.vector, dtype=np.float32).tobytes(),
            "created_at": tx.now,
        },
    ).scalar_one()
    if embedded.native:
        pgvector.store(tx, seq, embedded.vector)


def _emit(tx: Tx, row: dict[str, Any], type: str, data: dict[str, Any]) -> None:
    tx.emit(
        row["account_id"],
        type,
        data,
        session_id=row["session_id"],
        workspace_id=row["workspace_id"],
    )


def create(
    tx: Tx,
    limits: MemoryLimits,
    account_id: str,
    body: MemoryCreate,
    embedded: Embedded | None,
) -> dict[str, Any]:
    """A new item (201). ``sessionId``/``workspaceId`` must exist in the account (404);
    an item filed under a session is in that session's workspace."""
    check_namespace(body.namespace)
    text = check_text(limits, body.text)
    metadata = _check_metadata(limits, body.metadata)
    _check_ttl(body.ttl_seconds)
    workspace_id = body.workspace_id
    if body.session_id is not None:
        workspace_id = _session_workspace(tx, account_id, body.session_id)
        if body.workspace_id is not None and body.workspace_id != workspace_id:
            raise invalid("workspaceId", f"session {body.session_id} is in {workspace_id}")
    elif workspace_id is not None:
        workspaces.require(tx, account_id, workspace_id)
    count = tx.conn.execute(
        sa.select(t.memory_generations.c.item_count).where(
            t.memory_generations.c.account_id == account_id
        )
    ).scalar()
    if (count or 0) >= limits.per_account:
        raise Conflict(f"this account has {limits.per_account} memories, the most it may have")
    row = {
        "id": new_id("mem"),
        "account_id": account_id,
        "namespace": body.namespace,
        "text": text,
        "metadata": metadata,
        "session_id": body.session_id,
        "workspace_id": workspace_id,
        "summary_of": None,
        "created_at": tx.now,
        "updated_at": tx.now,
        "expires_at": tx.now + body.ttl_seconds * 1000 if body.ttl_seconds else None,
    }
    return _insert(tx, row, embedded)


def _insert(tx: Tx, row: dict[str, Any], embedded: Embedded | None) -> dict[str, Any]:
    row["num"] = tx.conn.execute(m.insert().returning(m.c.num), row).scalar_one()
    note_change(tx, row["account_id"], items=1, vectors_lost=False)
    if embedded is not None:
        _store_vector(tx, row["account_id"], row["num"], embedded)
    out = render(row, (embedded.model, embedded.dims) if embedded else None)
    _emit(tx, row, "memory.created", {"memory": out})
    return out


def _row(tx: Tx, account_id: str, memory_id: str) -> dict[str, Any]:
    found = tx.conn.execute(
        sa.select(m).where(m.c.account_id == account_id, m.c.id == memory_id, _live(tx))
    ).first()
    if found is None:
        raise not_found(memory_id)
    return dict(found._mapping)


def get(tx: Tx, account_id: str, memory_id: str, model: str | None) -> dict[str, Any]:
    found = tx.conn.execute(
        select_rendered(model).where(m.c.account_id == account_id, m.c.id == memory_id, _live(tx))
    ).first()
    if found is None:
        raise not_found(memory_id)
    return rendered(found, model)


def list_page(
    tx: Tx,
    account_id: str,
    model: str | None,
    *,
    namespace: str | None,
    session_id: str | None,
    workspace_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Oldest first (the order they were filed in)."""
    query = select_rendered(model).where(m.c.account_id == account_id, _live(tx))
    if namespace is not None:
        query = query.where(m.c.namespace == check_namespace(namespace))
    if session_id is not None:
        query = query.where(m.c.session_id == session_id)
    if workspace_id is not None:
        query = query.where(m.c.workspace_id == workspace_id)
    rows, next_cursor = keyset(tx, query, m.c.num, "memories", limit=limit, cursor=cursor)
    return [rendered(r, model) for r in rows], next_cursor


def update(
    tx: Tx,
    limits: MemoryLimits,
    account_id: str,
    memory_id: str,
    body: MemoryPatch,
    embedded: Embedded | None,
    model: str | None,
) -> dict[str, Any]:
    """Change ``text``/``metadata``/``ttlSeconds``. A new text takes ``embedded`` (made
    for it by the caller) or loses its vectors until the embedding job makes them;
    ``model`` is the configured embedder's (for the answer's ``embedding``)."""
    given = body.model_fields_set
    for name in ("text", "metadata"):
        if name in given and getattr(body, name) is None:
            raise invalid(name, "may not be null")
    row = _row(tx, account_id, memory_id)
    values: dict[str, Any] = {}
    if body.text is not None and body.text != row["text"]:
        values["text"] = check_text(limits, body.text)
    if body.metadata is not None:
        values["metadata"] = _check_metadata(limits, body.metadata)
    if "ttl_seconds" in given:
        _check_ttl(body.ttl_seconds)
        values["expires_at"] = tx.now + body.ttl_seconds * 1000 if body.ttl_seconds else None
    if not values:
        return get(tx, account_id, memory_id, model)
    values["updated_at"] = tx.now
    tx.conn.execute(m.update().where(m.c.num == row["num"]).values(**values))
    row.update(values)
    embedding: tuple[str, int] | None = None
    if "text" in values:
        if embedded is not None:
            _store_vector(tx, account_id, row["num"], embedded)
            embedding = (embedded.model, embedded.dims)
        else:
            tx.conn.execute(v.delete().where(v.c.memory_num == row["num"]))
            bump_generation(tx, account_id)
        out = render(row, embedding)
    else:
        out = get(tx, account_id, memory_id, model)
    _emit(tx, row, "memory.updated", {"memory": out, "changes": sorted(_camel(values))})
    return out


def _camel(values: dict[str, Any]) -> list[str]:
    names = {"expires_at": "expiresAt", "text": "text", "metadata": "metadata"}
    return [names[k] for k in values if k in names]


def delete(tx: Tx, account_id: str, memory_id: str) -> None:
    row = _row(tx, account_id, memory_id)
    tx.conn.execute(v.delete().where(v.c.memory_num == row["num"]))
    tx.conn.execute(m.delete().where(m.c.num == row["num"]))
    note_change(tx, account_id, items=-1)
    _emit(tx, row, "memory.deleted", {"id": memory_id})


def remember_summary(
    tx: Tx, session: dict[str, Any], text: str, files: list[str]
) -> dict[str, Any]:
    """The session's summary in ``session-memory``: one item per session, replaced by a
    later close or summarize (its vector is made again by the embedding job)."""
    account_id, session_id = session["account_id"], session["id"]
    metadata = {"title": session["title"], "tags": list(session["tags"]), "files": files}
    existing = tx.conn.execute(
        sa.select(m).where(m.c.account_id == account_id, m.c.summary_of == session_id)
    ).first()
    if existing is None:
        row = {
            "id": new_id("mem"),
            "account_id": account_id,
            "namespace": SUMMARY_NAMESPACE,
            "text": text,
            "metadata": metadata,
            "session_id": session_id,
            "workspace_id": session["workspace_id"],
            "summary_of": session_id,
            "created_at": tx.now,
            "updated_at": tx.now,
            "expires_at": None,
        }
        return _insert(tx, row, None)
    row = dict(existing._mapping)
    values = {"text": text, "metadata": metadata, "updated_at": tx.now}
    tx.conn.execute(m.update().where(m.c.num == row["num"]).values(**values))
    row.update(values)
    tx.conn.execute(v.delete().where(v.c.memory_num == row["num"]))
    bump_generation(tx, account_id)
    out = render(row, None)
    _emit(tx, row, "memory.updated", {"memory": out, "changes": ["text", "metadata"]})
    return out


def delete_for_session(tx: Tx, account_id: str, session_id: str) -> None:
    """A deleted session's items go with it (no event each: ``session.deleted`` says it)."""
    nums = sa.select(m.c.num).where(m.c.account_id == account_id, m.c.session_id == session_id)
    if tx.conn.execute(nums.limit(1)).first() is None:
        return
    tx.conn.execute(v.delete().where(v.c.memory_num.in_(nums.scalar_subquery())))
    gone = tx.conn.execute(
        m.delete().where(m.c.account_id == account_id, m.c.session_id == session_id)
    ).rowcount
    note_change(tx, account_id, items=-gone)


def purge_expired(tx: Tx, limit: int) -> int:
    """Delete up to ``limit`` items whose TTL passed (the sweep's share)."""
    rows = tx.conn.execute(
        sa.select(m.c.num, m.c.account_id)
        .where(m.c.expires_at.is_not(None), m.c.expires_at <= tx.now)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    nums = [r.num for r in rows]
    tx.conn.execute(v.delete().where(v.c.memory_num.in_(nums)))
    tx.conn.execute(m.delete().where(m.c.num.in_(nums)))
    for account_id, gone in Counter(r.account_id for r in rows).items():
        note_change(tx, account_id, items=-gone)
    return len(rows)


# -- the embedding job's steps ---------------------------------------------------------------


def backlog(tx: Tx, model: str, limit: int) -> list[tuple[int, str, int]]:
    """``(num, text, updated_at)`` of items with no vector under ``model``, oldest first."""
    query = (
        sa.select(m.c.num, m.c.text, m.c.updated_at)
        .select_from(m.outerjoin(v, sa.and_(v.c.memory_num == m.c.num, v.c.model == model)))
        .where(v.c.memory_num.is_(None))
        .order_by(m.c.num)
        .limit(limit)
    )
    return [(r.num, r.text, r.updated_at) for r in tx.conn.execute(query)]


def store_vectors(tx: Tx, items: list[tuple[int, int]], embedded: list[Embedded]) -> int:
    """Store each ``(num, updated_at)`` item's vector unless the item changed or went
    since it was read (its new text is the job's next round). Returns how many."""
    stored = 0
    for (num, updated_at), e in zip(items, embedded, strict=True):
        account_id = tx.conn.execute(
            sa.select(m.c.account_id).where(m.c.num == num, m.c.updated_at == updated_at)
        ).scalar()
        if account_id is not None:
            _store_vector(tx, account_id, num, e)
            stored += 1
    return stored


def drop_vectors(tx: Tx, model: str | None = None) -> int:
    """Delete every vector (or every vector of ``model``): ``memory reembed --all``."""
    query = v.delete() if model is None else v.delete().where(v.c.model == model)
    dropped = tx.conn.execute(query).rowcount
    for (account_id,) in tx.conn.execute(sa.select(m.c.account_id).distinct()):
        bump_generation(tx, account_id)
    return int(dropped)
