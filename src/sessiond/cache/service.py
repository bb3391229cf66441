"""Cache entry service: per-session key/value with versions, compare-and-set and TTL.

Writes lock the session row (``kernel.lock_light``; on PostgreSQL the entry row is
locked too, against the purge), require an ``active`` session and emit their event in the
same transaction. An entry past its ``expiresAt`` is absent for every read and for
compare-and-set from that moment on, whether or not the purge has removed the row yet.

Keys compare byte by byte on both backends (see ``tables.CacheKey``): listings are in the
same order on SQLite and PostgreSQL and ``prefix`` is case-sensitive, an index range.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from sessiond.cache.models import KEY_MAX, EntryPut
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import NotFound, PayloadTooLarge, VersionConflict, invalid
from sessiond.ids import iso
from sessiond.pagination import cursor_for, seek
from sessiond.sessions import kernel
from sessiond.sessions import validation as v
from sessiond.settings import Limits

CURSOR_KIND = "cache"
# A listing page stops early (with a nextCursor) once its values pass this many characters.
PAGE_CHARS = 8 * 1024 * 1024

c = t.cache_entries


def entry_not_found(key: str) -> NotFound:
    return NotFound(f"no cache entry {json.dumps(key, ensure_ascii=False)} in this session")


def check_key(key: str, field: str = "key") -> None:
    if not 1 <= len(key) <= KEY_MAX or not key.isprintable():
        raise invalid(field, f"1 to {KEY_MAX} printable characters ('/' allowed)")


def _check_if_version(value: int | None) -> None:
    if value is not None and value < 0:
        raise invalid("ifVersion", "must be 0 (the entry must not exist) or a version (1 or more)")


def _value_text(limits: Limits, value: Any) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise invalid("value", "must be JSON (NaN and Infinity are not JSON numbers)") from None
    size = len(text.encode("utf-8"))
    if size > limits.cache_value_bytes:
        raise PayloadTooLarge(
            f"value is {size} bytes of JSON; at most {limits.cache_value_bytes} bytes per "
            "cache entry (store large content as a file)",
            details={"limit": limits.cache_value_bytes, "size": size},
        )
    return text


def _live(now: int) -> sa.ColumnElement[bool]:
    return sa.or_(c.c.expires_at.is_(None), c.c.expires_at > now)


def _is_live(row: Any, now: int) -> bool:
    return row.expires_at is None or row.expires_at > now


def entry_text(
    key: str, value_text: str, version: int, expires_at: int | None, updated: int
) -> str:
    """The entry object as JSON text (the stored value is spliced in, not re-encoded)."""
    expires = "null" if expires_at is None else f'"{iso(expires_at)}"'
    return (
        f'{{"key":{json.dumps(key, ensure_ascii=False)},"value":{value_text},'
        f'"version":{version},"expiresAt":{expires},"updatedAt":"{iso(updated)}"}}'
    )


def _lock_entry(tx: Tx, session_id: str, key: str) -> Any:
    q = sa.select(c.c.version, c.c.expires_at).where(c.c.session_id == session_id, c.c.key == key)
    if tx.is_postgres:
        q = q.with_for_update()  # the purge deletes without the session lock
    return tx.conn.execute(q).first()


# -- writes --------------------------------------------------------------------------------


def put(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    key: str,
    body: EntryPut,
    *,
    if_match: int | str | None = None,
) -> tuple[bool, str]:
    """Write the entry; ``(created, entry JSON text)``. ``ifVersion`` makes it a CAS.

    Every write sets the expiry from its own ``ttlSeconds`` (omitted or null: never).
    """
    check_key(key)
    v.check_ttl(body.ttl_seconds)
    _check_if_version(body.if_version)
    text = _value_text(limits, body.value)
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    now = tx.now
    current = _lock_entry(tx, session_id, key)
    live = current is not None and _is_live(current, now)
    version_now = current.version if live else 0
    if body.if_version is not None and body.if_version != version_now:
        state = f"is at version {version_now}" if live else "does not exist"
        raise VersionConflict(
            f"ifVersion {body.if_version} does not match: cache entry {key!r} {state}; "
            "re-read it and retry",
            details={"currentVersion": version_now},
        )
    version = version_now + 1
    expires_at = now + body.ttl_seconds * 1000 if body.ttl_seconds else None
    values = {"value": text, "version": version, "expires_at": expires_at, "updated_at": now}
    where = (c.c.session_id == session_id, c.c.key == key)
    if current is None:
        tx.conn.execute(
            c.insert().values(
                session_id=session_id, key=key, account_id=account_id, created_at=now, **values
            )
        )
    elif not live:  # an expired row not purged yet: a new entry in its place
        tx.conn.execute(c.update().where(*where).values(created_at=now, **values))
    else:
        tx.conn.execute(c.update().where(*where).values(**values))
    event = {"key": key, "version": version, "expiresAt": iso(expires_at)}
    kernel.emit(tx, session, "cache.updated", event)
    return not live, entry_text(key, text, version, expires_at, now)


def delete(
    tx: Tx,
    account_id: str,
    session_id: str,
    key: str,
    *,
    if_version: int | None = None,
    if_match: int | str | None = None,
) -> None:
    check_key(key)
    _check_if_version(if_version)
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    current = _lock_entry(tx, session_id, key)
    if current is None or not _is_live(current, tx.now):
        raise entry_not_found(key)
    if if_version is not None and if_version != current.version:
        raise VersionConflict(
            f"ifVersion {if_version} does not match: cache entry {key!r} is at version "
            f"{current.version}; re-read it and retry",
            details={"currentVersion": current.version},
        )
    tx.conn.execute(c.delete().where(c.c.session_id == session_id, c.c.key == key))
    kernel.emit(tx, session, "cache.deleted", {"key": key})


def purge_expired(tx: Tx, *, limit: int) -> int:
    """Delete up to ``limit`` entries past their ``expiresAt``; returns how many.

    Reads already treat them as absent; this only reclaims the space (no events). On
    PostgreSQL rows are claimed with ``SKIP LOCKED``, so instances share the work and a
    write holding an entry's lock is never waited for.
    """
    q = (
        sa.select(c.c.session_id, c.c.key)
        .where(c.c.expires_at.is_not(None), c.c.expires_at <= tx.now)
        .limit(limit)
    )
    if tx.is_postgres:
        q = q.with_for_update(skip_locked=True)
    rows = tx.conn.execute(q).all()
    if rows:
        tx.conn.execute(
            c.delete().where(
                c.c.session_id == sa.bindparam("s"),
                c.c.key == sa.bindparam("k"),
                c.c.expires_at <= tx.now,
            ),
            [{"s": r.session_id, "k": r.key} for r in rows],
        )
    return len(rows)


# -- reads ---------------------------------------------------------------------------------


def get_text(tx: Tx, account_id: str, session_id: str, key: str) -> str:
    """The live entry as JSON text; 404 when absent or expired."""
    check_key(key)
    row = tx.conn.execute(
        sa.select(c.c.value, c.c.version, c.c.expires_at, c.c.updated_at).where(
            c.c.session_id == session_id,
            c.c.key == key,
            c.c.account_id == account_id,
            _live(tx.now),
            kernel.alive(c.c.session_id),
        )
    ).first()
    if row is None:
        kernel.require_exists(tx, account_id, session_id)
        raise entry_not_found(key)
    return entry_text(key, row.value, row.version, row.expires_at, row.updated_at)


def _prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (code point order,
    which is UTF-8 byte order), or None when there is none."""
    nxt = ord(prefix[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not characters
        nxt = 0xE000
    if nxt > 0x10FFFF:
        return None
    return prefix[:-1] + chr(nxt)


def list_page(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    prefix: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[str], str | None]:
    """Live entries ordered by key (JSON texts) and the next cursor; keyset-paginated."""
    if prefix:
        check_key(prefix, "prefix")
    kernel.require_exists(tx, account_id, session_id)
    where: list[sa.ColumnElement[bool]] = [
        c.c.session_id == session_id,
        c.c.account_id == account_id,
        _live(tx.now),
    ]
    if prefix:
        where.append(c.c.key >= prefix)
        end = _prefix_end(prefix)
        if end is not None:
            where.append(c.c.key < end)
        where.append(sa.func.substr(c.c.key, 1, len(prefix)) == prefix)
    # First the keys and sizes, to cut a page of large values short; then the values.
    sizes = sa.select(c.c.key, sa.func.length(c.c.value).label("size")).where(*where)
    heads = tx.conn.execute(seek(sizes, c.c.key, CURSOR_KIND, cursor).limit(limit + 1)).all()
    keys: list[str] = []
    total = 0
    for head in heads[:limit]:
        if keys and total + head.size > PAGE_CHARS:
            break
        keys.append(head.key)
        total += head.size
    more = len(keys) < len(heads)
    if not keys:
        return [], None
    rows = tx.conn.execute(
        sa.select(c.c.key, c.c.value, c.c.version, c.c.expires_at, c.c.updated_at)
        .where(c.c.session_id == session_id, c.c.key.in_(keys))
        .order_by(c.c.key)
    ).all()
    docs = [entry_text(r.key, r.value, r.version, r.expires_at, r.updated_at) for r in rows]
    next_cursor = cursor_for(CURSOR_KIND, c.c.key, {"key": keys[-1]}) if more else None
    return docs, next_cursor
