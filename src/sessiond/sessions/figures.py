"""The workspace figures of a session, as one value: ``{head, base, filesChanged,
linesAdded, linesRemoved}`` (the ``sessions.workspace`` column, API.md's ``workspace``).

``head`` is the working tree, ``base`` the tree the session started from, and the three
counts compare them. Built here and only here; ``files`` keeps them current on every
write, ``versions`` restores them with a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The git hash of the empty tree: the workspace of a session with no files.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
COUNTS = ("filesChanged", "linesAdded", "linesRemoved")


def counts(files_changed: int = 0, lines_added: int = 0, lines_removed: int = 0) -> dict[str, int]:
    """The three counts (what a checkpoint stores as its ``figures``)."""
    return {"filesChanged": files_changed, "linesAdded": lines_added, "linesRemoved": lines_removed}


def of(ws: Mapping[str, Any]) -> dict[str, int]:
    """The counts of a workspace value."""
    return {k: int(ws[k]) for k in COUNTS}


def workspace(head: str = EMPTY_TREE, base: str | None = None, **given: int) -> dict[str, Any]:
    """A workspace value; ``base`` defaults to ``head``, counts to 0 (``counts`` names)."""
    return {"head": head, "base": head if base is None else base, **counts(), **given}
