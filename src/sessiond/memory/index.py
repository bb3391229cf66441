"""The in-process vector matrices: one per (account, model), exact cosine by numpy.

A matrix holds every vector of the account under the model, with each item's namespace,
session and workspace (they never change) for filtering before ranking. It is kept
current cheaply:

- new vectors (an insert, a changed text's new vector: always a new row) are read by
  ``seq`` past the last one seen — exact, because vectors are written under
  ``Tx.order_commits`` (a reader that saw ``seq`` N never misses a smaller one later) —
  and replace any row of the same item;
- a lost vector (item deleted, text changed without a new vector, model dropped) bumps
  the account's generation (``service.bump_generation``): the next search on any
  instance rebuilds the matrix from scratch.

Rows whose item has since gone are harmless: the search fetches its candidates' items
with every filter applied, and a vanished item is simply not returned.

The arrays grow by doubling and new rows are written past the used length, so a search
running meanwhile (on the rows it saw) is undisturbed and an insert does not copy the
matrix; a replaced row is marked dead in place (a search in flight may skip that item
once). Namespaces, sessions and workspaces are held as integer codes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.memory import service

m, v = t.memories, t.memory_vectors
MIN_CAPACITY = 1024


@dataclass(frozen=True)
class View:
    """What one search reads: the first ``n`` rows of the arrays."""

    n: int
    nums: np.ndarray
    vectors: np.ndarray
    alive: np.ndarray
    columns: dict[str, np.ndarray]
    codes: dict[str | None, int]


@dataclass
class Matrix:
    generation: int
    seen_seq: int = 0  # the largest memory_vectors.seq read so far
    n: int = 0
    dims: int = 0
    nums: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    codes: dict[str | None, int] = field(default_factory=dict)
    rows_of: dict[int, int] = field(default_factory=dict)  # num → its live row

    COLUMNS = ("namespace", "session_id", "workspace_id")

    def code(self, value: str | None) -> int:
        return self.codes.setdefault(value, len(self.codes))

    def _grow(self, needed: int, dims: int) -> None:
        capacity = max(MIN_CAPACITY, needed, 2 * len(self.nums))
        keep = self.n if dims == self.dims else 0
        if keep == 0:
            self.n, self.rows_of = 0, {}
        nums = np.zeros(capacity, np.int64)
        vectors = np.zeros((capacity, dims), np.float32)
        alive = np.zeros(capacity, bool)
        if keep:
            nums[:keep], vectors[:keep], alive[:keep] = (
                self.nums[:keep],
                self.vectors[:keep],
                self.alive[:keep],
            )
        columns = {}
        for name in self.COLUMNS:
            column = np.zeros(capacity, np.int32)
            if keep:
                column[:keep] = self.columns[name][:keep]
            columns[name] = column
        self.nums, self.vectors, self.alive, self.columns = nums, vectors, alive, columns
        self.dims = dims

    def extend(self, rows: Sequence[Any]) -> None:
        """Add ``rows`` (seq, memory_num, vector bytes, namespace, session_id,
        workspace_id); a row of an item already held replaces it."""
        if not rows:
            return
        dims = len(rows[0].vector) // 4
        if dims != self.dims or self.n + len(rows) > len(self.nums):
            self._grow(self.n + len(rows), dims)
        for r in rows:
            vector = np.frombuffer(r.vector, dtype=np.float32)
            if vector.shape[0] != self.dims:
                continue  # another width under the same model id: not comparable
            old = self.rows_of.get(r.memory_num)
            if old is not None:
                self.alive[old] = False
            i = self.n
            self.nums[i], self.vectors[i], self.alive[i] = r.memory_num, vector, True
            for name in self.COLUMNS:
                self.columns[name][i] = self.code(getattr(r, name))
            self.rows_of[r.memory_num] = i
            self.n += 1
        self.seen_seq = max(self.seen_seq, max(r.seq for r in rows))

    def view(self) -> View:
        return View(self.n, self.nums, self.vectors, self.alive, self.columns, self.codes)


class VectorIndex:
    """Matrices by (account, model). ``search`` runs inside a read transaction."""

    def __init__(self) -> None:
        # True on PostgreSQL with pgvector: the database scores, no matrix is kept.
        self.native = False
        self._matrices: dict[tuple[str, str], Matrix] = {}
        self._lock = threading.Lock()

    def _refreshed(self, tx: Tx, account_id: str, model: str) -> View:
        gen = service.generation(tx, account_id)
        key = (account_id, model)
        with self._lock:
            matrix = self._matrices.get(key)
            if matrix is None or matrix.generation != gen:
                matrix = self._matrices[key] = Matrix(generation=gen)
            query = (
                sa.select(
                    v.c.seq,
                    v.c.memory_num,
                    v.c.vector,
                    m.c.namespace,
                    m.c.session_id,
                    m.c.workspace_id,
                )
                .select_from(v.join(m, m.c.num == v.c.memory_num))
                .where(v.c.account_id == account_id, v.c.model == model, v.c.seq > matrix.seen_seq)
                .order_by(v.c.seq)
            )
            matrix.extend(tx.conn.execute(query).all())
            return matrix.view()

    def search(
        self,
        tx: Tx,
        account_id: str,
        model: str,
        query: np.ndarray,
        *,
        limit: int,
        namespace: str | None,
        session_id: str | None,
        workspace_id: str | None,
        allowed: set[int] | None,
    ) -> list[int]:
        """The nums of the ``limit`` items most similar to ``query``, best first, among
        those passing the filters (``allowed``: the nums the metadata filter let through)."""
        view = self._refreshed(tx, account_id, model)
        n = view.n
        if not n or view.vectors.shape[1] != query.shape[0]:
            return []
        mask = view.alive[:n].copy()
        for name, wanted in (
            ("namespace", namespace),
            ("session_id", session_id),
            ("workspace_id", workspace_id),
        ):
            if wanted is not None:
                code = view.codes.get(wanted)
                if code is None:
                    return []
                mask &= view.columns[name][:n] == code
        if allowed is not None:
            wanted_nums = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
            mask &= np.isin(view.nums[:n], wanted_nums)
        candidates = np.flatnonzero(mask)
        if not len(candidates):
            return []
        k = min(limit, len(candidates))
        if len(candidates) * 4 < n:  # a selective filter: score only its rows
            scores = view.vectors[candidates] @ query
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            return [int(x) for x in view.nums[candidates[top]]]
        scores = view.vectors[:n] @ query  # one product over all rows, the rest masked off
        scores[~mask] = -np.inf
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [int(x) for x in view.nums[top]]

    def clear(self) -> None:
        with self._lock:
            self._matrices.clear()
