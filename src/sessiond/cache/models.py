"""Request body of ``PUT .../cache/{key}``. Sizes and ranges are checked by the service."""

from __future__ import annotations

import functools
import re
import sys
from typing import Annotated, Any

from pydantic import StrictInt

from sessiond.models import ApiModel, Declared
from sessiond.sessions.models import Ttl

KEY_MAX = 512


@functools.cache
def _printable() -> str:
    """``str.isprintable`` as a pattern's character class, from this Python's Unicode data
    (a pattern cannot name Unicode categories portably)."""
    flags = bytes(map(str.isprintable, map(chr, range(sys.maxunicode + 1))))

    def one(c: int) -> str:  # astral characters as themselves: no portable escape exists
        return f"\\u{c:04x}" if c <= 0xFFFF else chr(c)

    runs = ((m.start(), m.end() - 1) for m in re.finditer(rb"\x01+", flags))
    return "".join(one(a) if a == b else f"{one(a)}-{one(b)}" for a, b in runs)


def _printable_pattern() -> str:
    return f"^[{_printable()}]*$"  # (lengths apart: a bounded repeat of it is too big a regex)


# A key: 1 to 512 printable characters (``cache.service.check_key``), ``/`` allowed.
Key = Annotated[str, Declared(pattern=_printable_pattern, minLength=1, maxLength=KEY_MAX)]
# ``?prefix=``: empty, or the start of a key.
Prefix = Annotated[str | None, Declared(pattern=_printable_pattern, maxLength=KEY_MAX)]


class EntryPut(ApiModel):
    """``{value, ttlSeconds?, ifVersion?}``; ``value`` is required (``null`` is a value)."""

    value: Any
    ttl_seconds: Ttl | None = None
    if_version: Annotated[StrictInt, Declared(minimum=0)] | None = None
