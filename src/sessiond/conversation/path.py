"""A session's conversation path: pure logic over its segments (no database).

See docs/design/conversation.md. A path is ``{"head", "next", "segments"}``; a segment
``[branch, lo, hi, offset]`` shows messages ``lo..hi`` of ``branch`` at
``seq = bseq + offset``. Segments are contiguous in ``seq`` and in path order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Segment = list[Any]  # [branch_id: str, lo: int, hi: int, offset: int]
Path = dict[str, Any]


def empty() -> Path:
    return {"head": None, "next": 1, "segments": []}


def count(path: Path) -> int:
    return sum(seg[2] - seg[1] + 1 for seg in path["segments"])


def branches(path: Path) -> set[str]:
    out = {seg[0] for seg in path["segments"]}
    if path["head"] is not None:
        out.add(path["head"])
    return out


@dataclass(frozen=True)
class Range:
    """Messages ``lo..hi`` of ``branch``, which the path shows at seq ``bseq + offset``."""

    branch: str
    lo: int
    hi: int
    offset: int


def append(path: Path, branch: str) -> tuple[Path, int, int]:
    """Add one message on ``branch`` (the head). Returns ``(new path, bseq, seq)``."""
    new = copy.deepcopy(path)
    bseq = new["next"] if new["head"] == branch else 1
    seq = count(path) + 1
    segs = new["segments"]
    last = segs[-1] if segs else None
    if last is not None and last[0] == branch and last[2] == bseq - 1:
        last[2] = bseq
    else:
        segs.append([branch, bseq, bseq, seq - bseq])
    new["head"] = branch
    new["next"] = bseq + 1
    return new, bseq, seq


def locate(path: Path, branch: str, bseq: int) -> int | None:
    """The seq at which the path shows message ``(branch, bseq)``, or None if it does not."""
    for b, lo, hi, offset in path["segments"]:
        if b == branch and lo <= bseq <= hi:
            return int(bseq + offset)
    return None


def at_seq(path: Path, seq: int) -> tuple[str, int] | None:
    """``(branch, bseq)`` of the message at ``seq``, or None outside the path."""
    for b, lo, hi, offset in path["segments"]:
        if lo + offset <= seq <= hi + offset:
            return b, seq - offset
    return None


def window(path: Path, first: int, last: int) -> list[Range]:
    """The storage ranges that hold seqs ``first..last`` (clipped to the path)."""
    out: list[Range] = []
    for b, lo, hi, offset in path["segments"]:
        a = max(lo, first - offset)
        z = min(hi, last - offset)
        if a <= z:
            out.append(Range(b, a, z, offset))
    return out


def remove(path: Path, seq: int) -> Path:
    """The path without the message at ``seq``: its segment splits, later seqs drop by 1."""
    new = copy.deepcopy(path)
    out: list[Segment] = []
    for b, lo, hi, offset in new["segments"]:
        if hi + offset < seq:
            out.append([b, lo, hi, offset])
        elif lo + offset > seq:
            out.append([b, lo, hi, offset - 1])
        else:
            bseq = seq - offset
            if lo <= bseq - 1:
                out.append([b, lo, bseq - 1, offset])
            if bseq + 1 <= hi:
                out.append([b, bseq + 1, hi, offset - 1])
    new["segments"] = out
    return new


def cut(path: Path, seq: int) -> Path:
    """The path up to and including ``seq`` (0 = empty), with no head branch yet.

    Used by fork and by moving the head (restore, revert): the next append opens a new
    branch, so the messages after ``seq`` stay where they are for anyone who shows them.
    """
    out: list[Segment] = []
    for b, lo, hi, offset in path["segments"]:
        if lo + offset > seq:
            break
        out.append([b, lo, min(hi, seq - offset), offset])
    return {"head": None, "next": 1, "segments": out}


def compact(path: Path, compacted: int, branch: str) -> Path:
    """The path with its first ``compacted`` messages replaced by one message: ``bseq 1``
    of the new ``branch`` (the summary), at seq 1; the rest follows, rows unchanged.

    Used by compaction (docs/design/compaction.md): ``branch`` becomes the head, so the
    next append lands on it at ``bseq 2``.
    """
    n = count(path)
    if not 0 <= compacted <= n:
        raise ValueError(f"cannot compact {compacted} of {n} messages")
    shift = compacted - 1  # old seq compacted + 1 becomes seq 2
    kept = [[r.branch, r.lo, r.hi, r.offset - shift] for r in window(path, compacted + 1, n)]
    return {"head": branch, "next": 2, "segments": [[branch, 1, 1, 0], *kept]}
