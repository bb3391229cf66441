"""Line counts of a change, the way ``git diff --numstat`` counts them."""

from __future__ import annotations

import difflib

BINARY_SNIFF = 8000


def is_binary(data: bytes) -> bool:
    """Git's heuristic: a NUL byte in the first 8,000 bytes."""
    return b"\x00" in data[:BINARY_SNIFF]


def line_delta(old: bytes, new: bytes) -> tuple[int, int]:
    """``(additions, deletions)`` from ``old`` to ``new``; binary content counts 0/0."""
    if old == new or is_binary(old) or is_binary(new):
        return 0, 0
    a, b = old.splitlines(), new.splitlines()
    additions = deletions = 0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            deletions += i2 - i1
        if tag in ("replace", "insert"):
            additions += j2 - j1
    return additions, deletions
