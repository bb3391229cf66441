"""Opaque keyset cursors: base64url JSON of the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

import sqlalchemy as sa

from sessiond.db.executor import Tx
from sessiond.errors import invalid
from sessiond.models import Declared

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

# The ``limit`` query parameter of a keyset list, checked by ``check_limit``.
Limit = Annotated[int | None, Declared(minimum=1, maximum=MAX_LIMIT)]


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> dict[str, Any]:
    """Decode a cursor made by ``encode_cursor`` for the same listing (``kind``)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid(
            "cursor", "not a cursor this server issued; use nextCursor as given"
        ) from None
    if not isinstance(payload, dict) or payload.get("k") != kind:
        raise invalid("cursor", "this cursor belongs to another listing or ordering")
    return payload


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


def keyset(
    tx: Tx,
    query: sa.Select[Any],
    column: sa.Column[Any],
    kind: str,
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``query`` in the order of the unique ``column``, after the row the
    cursor names: ``(rows, nextCursor)``. ``nextCursor`` is None exactly when no row
    follows (one row more is read to tell). A cursor of another listing (``kind``) → 422.
    """
    if cursor:
        after = decode_cursor(cursor, kind).get(column.key)
        if not isinstance(after, str | int) or isinstance(after, bool):
            raise invalid("cursor", "not a cursor this server issued; use nextCursor as given")
        query = query.where(column < after if descending else column > after)
    order = column.desc() if descending else column
    rows = [dict(r._mapping) for r in tx.conn.execute(query.order_by(order).limit(limit + 1))]
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor({"k": kind, column.key: rows[-1][column.key]})
