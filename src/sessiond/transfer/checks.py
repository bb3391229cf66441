"""The manifest's own rules, beyond column types: unique ids, conversation paths that
show only messages that exist, references between rows, and the git objects the rows
reach (present, of the right type, trees within the workspace path rules).

Everything here reads the parsed manifest and the scanned pack only (no database), and
raises ``InvalidArchive`` naming the first problem. It runs before the import writes
anything, so a refused archive writes nothing.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import IO, Any

from dulwich.objects import Blob, Commit, ShaFile, Tree

from sessiond.conversation.messages import own_fields
from sessiond.conversation.parts import validate_parts
from sessiond.errors import InvalidPath, ValidationFailed
from sessiond.files import paths
from sessiond.ids import parse_iso
from sessiond.sessions.figures import COUNTS, EMPTY_TREE
from sessiond.transfer import pack
from sessiond.transfer.errors import InvalidArchive

SHA = re.compile(r"[0-9a-f]{40}")
TAG_CHARS = 100


def bad(field: str, message: str) -> InvalidArchive:
    return InvalidArchive("bad_manifest", f"{field}: {message}", field=field)


def missing(field: str, message: str) -> InvalidArchive:
    return InvalidArchive("missing_reference", f"{field}: {message}", field=field)


def unique(items: Iterable[Any], field: str) -> None:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise bad(field, f"{item!r:.80} appears twice")
        seen.add(item)


def shas(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(s, str) and SHA.fullmatch(s) for s in value
    ):
        raise bad(field, "must be a list of 40-hex git object ids")
    return value


def exported_at(value: Any) -> str:
    if not isinstance(value, str):
        raise bad("exportedAt", "must be an ISO 8601 time")
    try:
        parse_iso(value)
    except ValueError:
        raise bad("exportedAt", "must be an ISO 8601 time") from None
    return value


def tags(value: Any) -> list[str]:
    ok = isinstance(value, list) and all(
        isinstance(x, str) and 0 < len(x) <= TAG_CHARS for x in value
    )
    if not ok:
        raise bad("session.tags", f"must be a list of 1 to {TAG_CHARS}-character strings")
    unique(value, "session.tags")
    return list(value)


def workspace(value: Any, field: str) -> None:
    ok = isinstance(value, dict) and value.keys() == {"head", "base", *COUNTS}
    ok = ok and all(isinstance(value[k], str) and SHA.fullmatch(value[k]) for k in ("head", "base"))
    ok = ok and all(type(value[k]) is int and value[k] >= 0 for k in COUNTS)
    if not ok:
        raise bad(field, "must be {head, base, filesChanged, linesAdded, linesRemoved}")


# -- messages and paths ---------------------------------------------------------------------


class Conversation:
    """The archived branches and messages: which ``(branch, bseq)`` exist."""

    def __init__(self, branches: Any, messages: list[dict[str, Any]]) -> None:
        if not isinstance(branches, list) or not all(
            isinstance(b, str) and 0 < len(b) <= 40 for b in branches
        ):
            raise bad("branches", "must be a list of branch ids")
        unique(branches, "branches")
        self.branches = set(branches)
        unique((m["id"] for m in messages), "messages[].id")
        unique(((m["branch_id"], m["bseq"]) for m in messages), "messages[].(branch_id, bseq)")
        self.ids = {m["id"] for m in messages}
        by_branch: dict[str, list[int]] = defaultdict(list)
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            if m["branch_id"] not in self.branches:
                raise missing(f"{where}.branch_id", "is not one of the branches")
            if m["bseq"] < 1:
                raise bad(f"{where}.bseq", "must be 1 or more")
            _message_doc(m, where)
            by_branch[m["branch_id"]].append(m["bseq"])
        self.bseqs = {b: sorted(seqs) for b, seqs in by_branch.items()}

    def _count(self, branch: str, lo: int, hi: int) -> int:
        seqs = self.bseqs.get(branch, [])
        return bisect.bisect_right(seqs, hi) - bisect.bisect_left(seqs, lo)

    def check_path(self, path: Any, field: str, *, live: bool = False) -> None:
        """A path ``{head, next, segments}`` (conversation/path.py) whose segments are
        contiguous and show only messages that exist. ``live``: the session's own path,
        whose ``next`` is where the next append goes (beyond the head's last message); a
        checkpoint's head is never appended to (a restore opens a new branch)."""
        if not isinstance(path, dict) or path.keys() != {"head", "next", "segments"}:
            raise bad(field, "must be {head, next, segments}")
        head, nxt, segments = path["head"], path["next"], path["segments"]
        if head is not None and head not in self.branches:
            raise missing(f"{field}.head", "is not one of the branches")
        if type(nxt) is not int or nxt < 1:
            raise bad(f"{field}.next", "must be an integer of 1 or more")
        if live and head is not None and self.bseqs.get(head, [0])[-1] >= nxt:
            raise bad(f"{field}.next", "must come after the head branch's last message")
        if not isinstance(segments, list):
            raise bad(f"{field}.segments", "must be a list")
        seq = 1
        for i, seg in enumerate(segments):
            where = f"{field}.segments[{i}]"
            ok = isinstance(seg, list) and len(seg) == 4 and isinstance(seg[0], str)
            ok = ok and all(type(x) is int for x in seg[1:])
            if not ok:
                raise bad(where, "must be [branch, lo, hi, offset]")
            branch, lo, hi, offset = seg
            if branch not in self.branches:
                raise missing(where, "names a branch that is not one of the branches")
            if not 1 <= lo <= hi or lo + offset != seq:
                raise bad(where, "segments must be contiguous ranges, in path order")
            if self._count(branch, lo, hi) != hi - lo + 1:
                raise missing(where, "shows messages that are not in the archive")
            seq = hi + offset + 1

    def check_message(self, value: Any, field: str) -> None:
        if value is not None and value not in self.ids:
            raise missing(field, f"message {value!r:.60} is not in the archive")


_OWN = frozenset(own_fields({k: None for k in ("role", "parts", "tool_call_id", "tool_name",
                                                "metadata", "status", "created_at",
                                                "updated_at")}))  # fmt: skip


def _message_doc(m: dict[str, Any], where: str) -> None:
    doc = m["doc"]
    if not isinstance(doc, dict) or doc.keys() != _OWN:
        raise bad(f"{where}.doc", f"must hold exactly {sorted(_OWN)}")
    if doc["role"] != m["role"] or doc["status"] != m["status"]:
        raise bad(f"{where}.doc", "role and status must be the row's")
    if not isinstance(doc["metadata"], dict):
        raise bad(f"{where}.doc.metadata", "must be an object")
    try:
        validate_parts(doc["parts"], f"{where}.doc.parts")
    except ValidationFailed as e:
        raise bad(f"{where}.doc.parts", e.message) from None


# -- git objects ------------------------------------------------------------------------------


class Objects:
    """The scanned pack as ``paths.check_tree`` and the reference checks read it."""

    def __init__(self, scanned: pack.Scanned, f: IO[bytes]) -> None:
        self.scanned = scanned
        self.f = f

    def has(self, sha: str) -> bool:
        return sha == EMPTY_TREE or sha in self.scanned.entries

    def get(self, sha: str) -> ShaFile:
        """The object (trees and commits from memory, a blob read from the pack)."""
        kept = self.scanned.kept.get(sha)
        if kept is not None:
            return kept
        entry = self.scanned.entries.get(sha)
        if entry is None:
            if sha == EMPTY_TREE:
                return Tree()
            raise KeyError(sha)
        return Blob.from_string(pack.content(self.f, entry))

    def require(self, sha: str, kind: type[ShaFile], field: str) -> None:
        if sha == EMPTY_TREE and kind is Tree:
            return
        if not isinstance(self.scanned.kept.get(sha), kind) and not (
            kind is Blob and sha in self.scanned.entries
        ):
            raise missing(field, f"{kind.__name__.lower()} {sha} is not in the pack")

    def commits(self, roots: dict[str, str]) -> set[str]:
        """Check every commit reachable from ``roots`` (sha → field naming it): present,
        with its parents and tree; returns the trees of them all."""
        trees: set[str] = set()
        pending = list(roots.items())
        seen: set[str] = set()
        while pending:
            sha, field = pending.pop()
            if sha in seen:
                continue
            seen.add(sha)
            self.require(sha, Commit, field)
            commit = self.scanned.kept[sha]
            assert isinstance(commit, Commit)
            trees.add(commit.tree.decode())
            pending.extend((p.decode(), f"parent of commit {sha}") for p in commit.parents)
        return trees

    def check_trees(self, roots: dict[str, str]) -> None:
        """Every tree below ``roots`` present and within the workspace path rules."""
        for sha, field in roots.items():
            self.require(sha, Tree, field)
        try:
            paths.check_tree(self.get, *sorted(roots), has=self.has)
        except InvalidPath as e:
            reason = (
                "missing_reference"
                if " is missing" in e.message or ", not a " in e.message
                else "invalid_path"
            )
            raise InvalidArchive(reason, e.message) from None
