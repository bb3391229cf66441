"""Which columns of which tables travel in an archive, and how an archived row is checked.

Driven by the table metadata (``db/tables.py``): a row in the manifest has exactly the
exported columns of its table, each value of its column's type — a string no longer than
the column, an integer in the column's range, a boolean, or JSON — and ``None`` only
where the column is nullable. What the database could not store never reaches it, on
either backend (a value over ``VARCHAR(40)`` or ``INTEGER`` would be an error on
PostgreSQL only). A new column is exported the day it is added, and the format version
must then move (``archive.VERSION``); ``tests/test_export.py`` pins the column lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.transfer.errors import InvalidArchive


@dataclass(frozen=True)
class Spec:
    """How one table travels: under manifest key ``key``, all columns but ``account_id``
    and ``internal``; ``json_text`` columns hold JSON text in the database and travel as
    JSON values."""

    key: str
    table: sa.Table
    internal: frozenset[str] = frozenset()
    json_text: frozenset[str] = frozenset()

    @property
    def columns(self) -> list[sa.Column[Any]]:
        skip = self.internal | {"account_id"}
        return [c for c in self.table.c if c.name not in skip]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns)


# The session row: ``doc`` is rendered again; the sandbox and the agent process are of the
# origin server's disk; the version and the summary queue start afresh (importer.py).
SESSION = Spec(
    "session",
    t.sessions,
    internal=frozenset(
        {
            "doc",
            "sandbox",
            "sandbox_host",
            "sandbox_due",
            "acp_session_id",
            "lifecycle_version",
            "summary_due",
            "deleted_at",
        }
    ),
)
MESSAGES = Spec("messages", t.messages, json_text=frozenset({"doc"}))
# Session-owned rows, in the order they are written on import.
OWNED = (
    Spec("checkpoints", t.checkpoints),
    Spec("commits", t.commits),
    Spec("tasks", t.tasks),
    Spec("notes", t.notes),
    Spec("annotations", t.annotations_table),
    Spec("approvals", t.approvals),
    Spec("cacheEntries", t.cache_entries, json_text=frozenset({"value"})),
    Spec("turns", t.turns, internal=frozenset({"owner", "heartbeat_at"})),
    Spec("memories", t.memories, internal=frozenset({"num"})),
)
SPECS = {spec.key: spec for spec in (MESSAGES, *OWNED)}

_RANGES = ((sa.SmallInteger, 15), (sa.BigInteger, 63), (sa.Integer, 31))


def export_row(spec: Spec, row: Any) -> dict[str, Any]:
    """A database row as it travels (``json_text`` columns parsed)."""
    out = {c.name: row[c.name] for c in spec.columns}
    for name in spec.json_text:
        out[name] = json.loads(out[name])
    return out


def type_error(column: sa.Column[Any], value: Any) -> str | None:
    """Why ``value`` cannot be stored in ``column`` (None: it can)."""
    if value is None:
        return None if column.nullable else "must not be null"
    kind = column.type
    if isinstance(kind, sa.JSON):
        return None  # any JSON (strings checked when the manifest was parsed)
    if isinstance(kind, sa.Boolean):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(kind, sa.Integer):
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        bits = next(b for cls, b in _RANGES if isinstance(kind, cls))
        return None if -(2**bits) <= value < 2**bits else f"out of range for {bits + 1}-bit"
    if isinstance(kind, sa.String):
        if not isinstance(value, str):
            return "must be a string"
        if kind.length is not None and len(value) > kind.length:
            return f"at most {kind.length} characters"
        return None
    raise AssertionError(f"no archive rule for column type {kind!r} ({column})")


def check_row(spec: Spec, row: Any, where: str) -> dict[str, Any]:
    """``row`` if it is a storable row of ``spec``'s table, else ``InvalidArchive``
    (``bad_manifest``) naming the field (``where`` is the row's place, e.g. ``tasks[3]``)."""
    if not isinstance(row, dict):
        raise InvalidArchive("bad_manifest", f"{where} must be an object", field=where)
    names = spec.names
    if row.keys() != names:
        missing = sorted(names - row.keys())
        unknown = sorted(row.keys() - names)
        parts = [f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else ""]
        text = "; ".join(p for p in parts if p)
        raise InvalidArchive("bad_manifest", f"{where}: {text}", field=where)
    for column in spec.columns:
        value = row[column.name]
        if column.name in spec.json_text:
            continue
        reason = type_error(column, value)
        if reason is not None:
            field = f"{where}.{column.name}"
            raise InvalidArchive("bad_manifest", f"{field}: {reason}", field=field)
    return row


def check_rows(spec: Spec, rows: Any) -> list[dict[str, Any]]:
    """Every row of the list under ``spec.key`` (``check_row``)."""
    if not isinstance(rows, list):
        raise InvalidArchive("bad_manifest", f"{spec.key} must be a list", field=spec.key)
    return [check_row(spec, row, f"{spec.key}[{i}]") for i, row in enumerate(rows)]


def db_row(spec: Spec, row: dict[str, Any], account_id: str) -> dict[str, Any]:
    """An archived row as it is inserted (``json_text`` columns rendered as JSON text)."""
    out = {**row, "account_id": account_id}
    for name in spec.json_text:
        out[name] = json.dumps(row[name], separators=(",", ":"), ensure_ascii=False)
    return out
