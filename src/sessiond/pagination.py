"""Keyset pages for every list stored as rows: ``keyset`` (or ``seek`` + ``cursor_for``
where a page is cut short by size, as the cache's is). A cursor is opaque: base64url JSON
of the listing's kind and the last row's sort key. ``nextCursor`` is null exactly when no
row follows.

Three lists page differently, on purpose: messages (a seq window on the session's path,
both directions), the file manifest (a walk of a git tree, not rows), and events (API.md
gives them an integer cursor, the event id; they follow the same null rule).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
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


# The sort key of a keyset list: one unique column, or columns whose tuple is unique.
Key = sa.Column[Any] | Sequence[sa.Column[Any]]


def _columns(key: Key) -> tuple[sa.Column[Any], ...]:
    return (key,) if isinstance(key, sa.Column) else tuple(key)


def seek(
    query: sa.Select[Any], key: Key, kind: str, cursor: str | None, *, descending: bool = False
) -> sa.Select[Any]:
    """``query`` in the order of ``key``, starting after the row ``cursor`` names (made by
    ``cursor_for`` with the same ``kind`` and key; another listing's cursor → 422)."""
    cols = _columns(key)
    if cursor:
        pos = decode_cursor(cursor, kind)
        values = [pos.get(col.key) for col in cols]
        if any(not isinstance(v, str | int) or isinstance(v, bool) for v in values):
            raise invalid("cursor", "not a cursor this server issued; use nextCursor as given")
        if len(cols) == 1:
            col, value = cols[0], values[0]
            query = query.where(col < value if descending else col > value)
        else:
            here = sa.tuple_(*cols)
            after = sa.tuple_(*[sa.literal(v) for v in values])
            query = query.where(here < after if descending else here > after)
    return query.order_by(*[col.desc() if descending else col.asc() for col in cols])


def cursor_for(kind: str, key: Key, row: Mapping[str, Any]) -> str:
    """The cursor of the page that follows ``row`` (a row holding every column of ``key``)."""
    return encode_cursor({"k": kind, **{col.key: row[col.key] for col in _columns(key)}})


def keyset(
    tx: Tx,
    query: sa.Select[Any],
    key: Key,
    kind: str,
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``query`` in the order of ``key``, after the row the cursor names:
    ``(rows, nextCursor)``. ``nextCursor`` is None exactly when no row follows (one row
    more is read to tell). A cursor of another listing (``kind``) → 422.
    """
    page = seek(query, key, kind, cursor, descending=descending).limit(limit + 1)
    result = tx.conn.execute(page)
    names = list(result.keys())  # once, not per row (a page of 100 paid 100 lookups)
    rows = [dict(zip(names, r, strict=True)) for r in result]
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, cursor_for(kind, key, rows[-1])
