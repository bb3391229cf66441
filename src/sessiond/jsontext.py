"""Compact JSON text, fast: orjson where it can, the standard library for what orjson
refuses (integers beyond 64 bits, non-string keys), so any value that encoded before
still encodes. Output: no spaces, UTF-8 as is (no ``\\u`` escapes), keys in insertion
order. (Floats are written the shortest way that reads back exactly — ``1e100``, not
``1e+100``; NaN and infinities, which are not JSON, become ``null``.)
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
