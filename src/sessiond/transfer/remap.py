"""New ids for an imported session's rows: old id → new id, one map per import.

Ids are kept apart by kind (a branch and a message never share a map entry), and the
same old id always gives the same new id, so every place that names a row (paths,
checkpoints, targets, turns) points at the new row. ``None`` stays ``None``.

Lists are ordered by id (checkpoints newest first, notes, approvals, ...), so ``reserve``
gives a kind's ids in the order of the old ones: consecutive ULIDs of one moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ulid import ULID

from sessiond.ids import new_id

# kind → the prefix of its new ids (API.md, Conventions; branches and memories as stored).
PREFIXES = {
    "branch": "br",
    "message": "msg",
    "checkpoint": "cp",
    "task": "tsk",
    "note": "nte",
    "annotation": "ann",
    "approval": "apr",
    "turn": "trn",
    "memory": "mem",
}


class Ids:
    def __init__(self) -> None:
        self._map: dict[tuple[str, str], str] = {}

    def reserve(self, kind: str, olds: Iterable[str]) -> None:
        """New ids for ``olds`` that sort as the old ones do."""
        base = int(ULID())
        for i, old in enumerate(sorted(set(olds))):
            self._map.setdefault((kind, old), f"{PREFIXES[kind]}_{ULID.from_int(base + i)}")

    def new(self, kind: str, old: str) -> str:
        key = (kind, old)
        found = self._map.get(key)
        if found is None:
            found = self._map[key] = new_id(PREFIXES[kind])
        return found

    def maybe(self, kind: str, old: str | None) -> str | None:
        return None if old is None else self.new(kind, old)

    def path(self, path: dict[str, Any]) -> dict[str, Any]:
        """A conversation path with its branches renamed."""
        return {
            "head": self.maybe("branch", path["head"]),
            "next": path["next"],
            "segments": [
                [self.new("branch", b), lo, hi, off] for b, lo, hi, off in path["segments"]
            ],
        }
