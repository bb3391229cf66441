"""Git objects in the database: read, check, add (batched, idempotent), per account.

``ObjectStore(tx, account_id)`` works inside the caller's transaction; objects it adds
commit (or roll back) with whatever references them. Shas are hex ``str`` here; dulwich
uses hex ``bytes``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import sqlalchemy as sa
from dulwich.objects import ObjectID, ShaFile
from sqlalchemy.dialects import postgresql, sqlite

from sessiond.db import tables as t
from sessiond.db.executor import Tx

g = t.git_objects
BATCH = 500
# Transaction-level advisory lock on PostgreSQL: shared by every write that uses the
# object store, exclusive for garbage collection (files/gc.py).
GC_LOCK_KEY = 0x5E55_6C00

_GET = sa.select(g.c.type, g.c.data).where(
    g.c.account_id == sa.bindparam("account_id"), g.c.sha == sa.bindparam("sha")
)


class MissingObject(KeyError):
    """A sha that is not in this account's store (a bug or a corrupt reference)."""


class ObjectStore:
    def __init__(self, tx: Tx, account_id: str) -> None:
        self.tx = tx
        self.account_id = account_id
        self._cache: dict[str, ShaFile] = {}
        if tx.is_postgres and not tx.readonly:
            # Until this transaction commits, garbage collection cannot run (and it
            # waits here while one runs): nothing it references can vanish under it.
            tx.conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": GC_LOCK_KEY})

    def get(self, sha: str) -> ShaFile:
        """The object ``sha`` (parsed); ``MissingObject`` if this account has none."""
        hit = self._cache.get(sha)
        if hit is not None:
            return hit
        row = self.tx.conn.execute(_GET, {"account_id": self.account_id, "sha": sha}).first()
        if row is None:
            raise MissingObject(sha)
        obj = ShaFile.from_raw_string(
            row.type, zlib.decompress(row.data), sha=ObjectID(sha.encode())
        )
        self._cache[sha] = obj
        return obj

    def get_many(self, shas: list[str]) -> dict[str, ShaFile]:
        """The objects among ``shas`` that exist, fetched in batches (missing ones left out)."""
        out = {sha: self._cache[sha] for sha in shas if sha in self._cache}
        wanted = [sha for sha in shas if sha not in out]
        for i in range(0, len(wanted), BATCH):
            chunk = wanted[i : i + BATCH]
            rows = self.tx.conn.execute(
                sa.select(g.c.sha, g.c.type, g.c.data).where(
                    g.c.account_id == self.account_id, g.c.sha.in_(chunk)
                )
            )
            for row in rows:
                obj = ShaFile.from_raw_string(
                    row.type, zlib.decompress(row.data), sha=ObjectID(row.sha.encode())
                )
                self._cache[row.sha] = obj
                out[row.sha] = obj
        return out

    def raw_many(self, shas: list[str]) -> dict[str, bytes]:
        """The contents of the objects among ``shas`` that exist (a blob's bytes),
        decompressed but not parsed, in batches; nothing is cached."""
        out: dict[str, bytes] = {}
        for i in range(0, len(shas), BATCH):
            rows = self.tx.conn.execute(
                sa.select(g.c.sha, g.c.data).where(
                    g.c.account_id == self.account_id, g.c.sha.in_(shas[i : i + BATCH])
                )
            )
            for sha, data in rows:
                out[sha] = zlib.decompress(data)
        return out

    def contains(self, sha: str) -> bool:
        if sha in self._cache:
            return True
        row = self.tx.conn.execute(_GET, {"account_id": self.account_id, "sha": sha}).first()
        return row is not None

    def add(self, objects: Iterable[ShaFile]) -> int:
        """Store objects (those already present are skipped). Returns how many were given."""
        rows = []
        for obj in objects:
            sha = obj.id.decode()
            if sha in self._cache:
                continue
            self._cache[sha] = obj
            raw = obj.as_raw_string()
            rows.append(
                {
                    "account_id": self.account_id,
                    "sha": sha,
                    "type": obj.type_num,
                    "size": len(raw),
                    "data": zlib.compress(raw, 1),
                }
            )
        for i in range(0, len(rows), BATCH):
            self.tx.conn.execute(self._insert(), rows[i : i + BATCH])
        return len(rows)

    def _insert(self) -> sa.Insert:
        if self.tx.is_postgres:
            return postgresql.insert(g).on_conflict_do_nothing()
        return sqlite.insert(g).on_conflict_do_nothing()
