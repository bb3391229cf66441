"""Idempotent creation: the same ``Idempotency-Key`` and body replay the first response.

The record is written in the same transaction as what the request creates, so a crash
can never leave one without the other. Two concurrent requests with the same key race
on the primary key: the loser's transaction (creation included) rolls back and it
replays the winner's response.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from sessiond import jsontext
from sessiond.db import tables as t
from sessiond.db.executor import Database, Tx
from sessiond.errors import IdempotencyMismatch, invalid

MAX_KEY = 255


@dataclass(frozen=True)
class Outcome:
    status: int
    body: str  # JSON text, stored and replayed byte for byte
    replayed: bool


def request_hash(method: str, path: str, body: bytes) -> str:
    h = hashlib.sha256()
    h.update(method.encode())
    h.update(b"\0")
    h.update(path.encode())
    h.update(b"\0")
    h.update(body)
    return h.hexdigest()


def _dumps(body: Any) -> str:
    return jsontext.dumps(body)


async def run(
    db: Database,
    *,
    account_id: str,
    key: str | None,
    fingerprint: str,
    ttl_seconds: int,
    create: Callable[[Tx], tuple[int, Any]],
) -> Outcome:
    """Run ``create`` (returns status and JSON-able body) at most once per key."""
    if key is None:
        status, body = await db.write(create)
        return Outcome(status, _dumps(body), False)
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise invalid("Idempotency-Key", f"must be 1 to {MAX_KEY} printable characters")

    def once(tx: Tx) -> Outcome:
        table = t.idempotency_keys
        row = tx.conn.execute(
            sa.select(table).where(table.c.account_id == account_id, table.c.key == key)
        ).first()
        if row is not None and row.created_at < tx.now - ttl_seconds * 1000:
            tx.conn.execute(
                table.delete().where(table.c.account_id == account_id, table.c.key == key)
            )
            row = None
        if row is not None:
            if row.request_hash != fingerprint:
                raise IdempotencyMismatch(
                    "this Idempotency-Key was used with a different request; "
                    "use a new key for a new request",
                )
            return Outcome(row.status_code, row.response, True)
        status, body = create(tx)
        text = _dumps(body)
        tx.conn.execute(
            table.insert().values(
                account_id=account_id,
                key=key,
                request_hash=fingerprint,
                status_code=status,
                response=text,
                created_at=tx.now,
            )
        )
        return Outcome(status, text, False)

    try:
        return await db.write(once)
    except IntegrityError:
        # A concurrent request with the same key committed first: replay it.
        return await db.write(once)


def purge_expired(tx: Tx, ttl_seconds: int) -> int:
    table = t.idempotency_keys
    result = tx.conn.execute(table.delete().where(table.c.created_at < tx.now - ttl_seconds * 1000))
    return int(result.rowcount or 0)
