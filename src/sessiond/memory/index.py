"""The in-process vector matrices: one per (account, model), exact cosine by numpy.

A matrix holds every vector of the account under the model, with each item's namespace,
session and workspace (they never change) for filtering before ranking. It is kept
current cheaply:

- new vectors (an insert, a changed text's new vector) are read by ``created_at``
  since the last refresh, minus ``SLACK_MS`` (a transaction that started earlier may
  commit later), and replace any row of the same item;
- a lost vector (item deleted, text changed without a new vector, model dropped) bumps
  the account's generation (``service.bump_generation``): the next search on any
  instance rebuilds the matrix from scratch.

Rows whose item has since gone are harmless: the search fetches its candidates' items
with every filter applied, and a vanished item is simply not returned.
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

SLACK_MS = 60_000
m, v = t.memories, t.memory_vectors


@dataclass
class Matrix:
    generation: int
    seen_until: int = 0  # the largest created_at read so far
    nums: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    namespaces: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    sessions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    workspaces: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    # num → created_at of the vectors read that are inside the slack window
    recent: dict[int, int] = field(default_factory=dict)

    def merged(self, rows: Sequence[Any]) -> Matrix:
        """A new matrix: this one plus ``rows`` (num, vector bytes, namespace, session,
        workspace, created_at), which replace rows of the same items. Searches running
        on this one are undisturbed."""
        if not rows:
            return self
        nums = np.array([r.memory_num for r in rows], dtype=np.int64)
        new = np.stack([np.frombuffer(r.vector, dtype=np.float32) for r in rows])
        keep = ~np.isin(self.nums, nums)
        if self.vectors.shape[1] not in (0, new.shape[1]):
            keep[:] = False  # another width under the same model id: start over

        def column(old: np.ndarray, name: str) -> np.ndarray:
            return np.concatenate([old[keep], np.array([getattr(r, name) for r in rows], object)])

        seen_until = max(self.seen_until, max(r.created_at for r in rows))
        recent = {n: at for n, at in self.recent.items() if at >= seen_until - SLACK_MS}
        recent.update((r.memory_num, r.created_at) for r in rows)
        return Matrix(
            generation=self.generation,
            seen_until=seen_until,
            recent=recent,
            nums=np.concatenate([self.nums[keep], nums]),
            vectors=np.concatenate([self.vectors[keep], new]) if keep.any() else new,
            namespaces=column(self.namespaces, "namespace"),
            sessions=column(self.sessions, "session_id"),
            workspaces=column(self.workspaces, "workspace_id"),
        )


class VectorIndex:
    """Matrices by (account, model). ``search`` runs inside a read transaction."""

    def __init__(self) -> None:
        self._matrices: dict[tuple[str, str], Matrix] = {}
        self._lock = threading.Lock()

    def _refreshed(self, tx: Tx, account_id: str, model: str) -> Matrix:
        gen = service.generation(tx, account_id)
        key = (account_id, model)
        with self._lock:
            matrix = self._matrices.get(key)
            if matrix is None or matrix.generation != gen:
                matrix = Matrix(generation=gen)
                fresh = tx.conn.execute(self._rows(account_id, model)).all()
            else:
                # Only (num, created_at) of the slack window; whole rows of the new ones.
                since = matrix.seen_until - SLACK_MS
                recent = tx.conn.execute(
                    sa.select(v.c.memory_num, v.c.created_at).where(
                        v.c.account_id == account_id,
                        v.c.model == model,
                        v.c.created_at >= since,
                    )
                ).all()
                new = [
                    r.memory_num for r in recent if matrix.recent.get(r.memory_num) != r.created_at
                ]
                fresh = []
                for start in range(0, len(new), 500):
                    chunk = new[start : start + 500]
                    query = self._rows(account_id, model).where(v.c.memory_num.in_(chunk))
                    fresh += tx.conn.execute(query).all()
            matrix = matrix.merged(fresh)
            self._matrices[key] = matrix
            return matrix

    @staticmethod
    def _rows(account_id: str, model: str) -> sa.Select[Any]:
        return (
            sa.select(
                v.c.memory_num,
                v.c.vector,
                v.c.created_at,
                m.c.namespace,
                m.c.session_id,
                m.c.workspace_id,
            )
            .select_from(v.join(m, m.c.num == v.c.memory_num))
            .where(v.c.account_id == account_id, v.c.model == model)
        )

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
        matrix = self._refreshed(tx, account_id, model)
        if not len(matrix.nums) or matrix.vectors.shape[1] != query.shape[0]:
            return []
        mask = np.ones(len(matrix.nums), dtype=bool)
        if namespace is not None:
            mask &= matrix.namespaces == namespace
        if session_id is not None:
            mask &= matrix.sessions == session_id
        if workspace_id is not None:
            mask &= matrix.workspaces == workspace_id
        if allowed is not None:
            mask &= np.isin(matrix.nums, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
        candidates = np.flatnonzero(mask)
        if not len(candidates):
            return []
        if len(candidates) == len(mask):
            scores = matrix.vectors @ query
        else:
            scores = matrix.vectors[candidates] @ query
        k = min(limit, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        picked = top if len(candidates) == len(mask) else candidates[top]
        return [int(n) for n in matrix.nums[picked]]

    def clear(self) -> None:
        with self._lock:
            self._matrices.clear()
