"""Prefixed, sortable ids (``ses_<ULID>``) and millisecond timestamps."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime

from ulid import ULID


def new_id(prefix: str) -> str:
    """A new id such as ``ses_01JD...``; lexical order follows creation time."""
    return f"{prefix}_{ULID()}"


def now_ms() -> int:
    """Wall-clock time in integer milliseconds since the epoch (how times are stored)."""
    return time.time_ns() // 1_000_000


def iso(ms: int | None) -> str | None:
    """Render stored milliseconds as ISO 8601 UTC with milliseconds (``...T17:00:00.000Z``)."""
    if ms is None:
        return None
    return _second(ms // 1000) + f"{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=8192)
def _second(seconds: int) -> str:
    """``2026-12-02T00:40:00.`` for a second since the epoch (cached: a page of rows
    written close together shares its seconds; strftime was a sixth of a list's time)."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 timestamp (``Z`` or offset; naive means UTC) into milliseconds."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
