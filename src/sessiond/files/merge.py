"""Three-way merge of one session's files into another's.

The merge base is the nearest common ancestor of the two sessions' last commits (as git
computes it; with no common commit, the source's base — the fork point); the two working
trees merge against it, text files line by line (merge3). When the source has nothing the
target lacks the answer is ``up_to_date`` and nothing is written. Otherwise both working
trees are committed (if they changed since their last commit) and the result lands on the
target's working tree with a merge commit whose parents are the target's and the source's
commits, so a second merge brings only what is new. ``status`` is ``merged``, or
``conflicts`` when ``markers`` wrote conflict markers (``ours``/``theirs`` resolve every
conflict; the resolved paths are listed either way). Every entry the merge writes follows
the workspace path rules, or nothing is written (422 ``invalid_path``).
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Any

import merge3
from dulwich.objects import Blob, Commit

from sessiond.db.executor import Tx
from sessiond.errors import MergeConflict, invalid
from sessiond.files import commits, paths, trees
from sessiond.files.objects import ObjectStore
from sessiond.files.service import write_changes
from sessiond.files.stats import is_binary
from sessiond.sessions import kernel

STRATEGIES = ("fail", "ours", "theirs", "markers")


def _ancestors(store: ObjectStore, sha: str) -> dict[str, int]:
    """Every ancestor of ``sha`` (itself included) with its distance."""
    seen = {sha: 0}
    queue = deque([sha])
    while queue:
        current = queue.popleft()
        obj = store.get(current)
        assert isinstance(obj, Commit)
        for parent in obj.parents:
            p = parent.decode()
            if p not in seen:
                seen[p] = seen[current] + 1
                queue.append(p)
    return seen


def merge_base(store: ObjectStore, ours: str, theirs: str) -> str | None:
    """The nearest common ancestor commit of two commits, or None."""
    mine = _ancestors(store, ours)
    best: tuple[int, str] | None = None
    for sha, distance in _ancestors(store, theirs).items():
        if sha in mine:
            score = distance + mine[sha]
            if best is None or score < best[0]:
                best = (score, sha)
    return None if best is None else str(best[1])


def _tree(store: ObjectStore, commit_sha: str) -> str:
    obj = store.get(commit_sha)
    assert isinstance(obj, Commit)
    return str(obj.tree.decode())


def _lines(store: ObjectStore, entry: trees.Entry | None) -> list[bytes]:
    if entry is None:
        return []
    return store.get(entry[1]).as_raw_string().splitlines(keepends=True)


def _content(store: ObjectStore, entry: trees.Entry | None) -> bytes:
    return b"" if entry is None else store.get(entry[1]).as_raw_string()


def _merge_text(
    base: list[bytes], ours: list[bytes], theirs: list[bytes], strategy: str
) -> tuple[list[bytes], bool]:
    """``(merged lines, had conflicts)``; conflicting hunks resolved per the strategy."""
    m = merge3.Merge3(base, ours, theirs)
    out: list[bytes] = []
    conflicted = False
    for tagged in m.merge_regions():
        region: tuple[Any, ...] = tuple(tagged)  # (kind, *bounds): bounds differ by kind
        kind = region[0]
        if kind == "unchanged":
            out.extend(base[region[1] : region[2]])
        elif kind in ("a", "same"):
            out.extend(ours[region[1] : region[2]])
        elif kind == "b":
            out.extend(theirs[region[1] : region[2]])
        else:
            conflicted = True
            a_lines = ours[region[3] : region[4]]
            b_lines = theirs[region[5] : region[6]]
            if strategy == "theirs":
                out.extend(b_lines)
            elif strategy == "markers":
                out.append(b"<<<<<<< ours\n")
                out.extend(_ensure_newline(a_lines))
                out.append(b"=======\n")
                out.extend(_ensure_newline(b_lines))
                out.append(b">>>>>>> theirs\n")
            else:  # ours (and fail: the result is discarded)
                out.extend(a_lines)
    return out, conflicted


def _ensure_newline(lines: list[bytes]) -> list[bytes]:
    if lines and not lines[-1].endswith(b"\n"):
        return [*lines[:-1], lines[-1] + b"\n"]
    return lines


def merge_trees(
    store: ObjectStore, base: str, ours: str, theirs: str, strategy: str
) -> tuple[dict[str, trees.Entry | None], list[Blob], list[dict[str, str]]]:
    """The changes to apply to ``ours``, the new blobs, and the conflicts found."""
    changes: dict[str, trees.Entry | None] = {}
    blobs: list[Blob] = []
    conflicts: list[dict[str, str]] = []
    for path, b_entry, t_entry in trees.diff(store, base, theirs):
        try:
            o_entry = trees.lookup(store, ours, path)
        except Exception:  # a symlink on our side where theirs has a directory
            o_entry = None
        if o_entry in (b_entry, t_entry):
            if o_entry != t_entry:
                changes[path] = t_entry  # only theirs changed it
            continue
        # both sides changed the path, differently
        if o_entry is None or t_entry is None:
            conflicts.append({"path": path, "kind": "delete/modify"})
            if strategy == "theirs":
                changes[path] = t_entry
            continue  # ours / markers keep our side (the modified file stays for markers)
        o_data, t_data = _content(store, o_entry), _content(store, t_entry)
        if (
            is_binary(o_data)
            or is_binary(t_data)
            or (b_entry and is_binary(_content(store, b_entry)))
        ):
            conflicts.append({"path": path, "kind": "binary"})
            if strategy == "theirs":
                changes[path] = t_entry
            continue
        merged, conflicted = _merge_text(
            _lines(store, b_entry),
            o_data.splitlines(keepends=True),
            t_data.splitlines(keepends=True),
            strategy,
        )
        if conflicted:
            kind = "add/add" if b_entry is None else "content"
            conflicts.append({"path": path, "kind": kind})
        blob = Blob.from_string(b"".join(merged))
        if blob.id.decode() != o_entry[1]:
            blobs.append(blob)
            changes[path] = (o_entry[0], blob.id.decode())
    return changes, blobs, conflicts


def _check_changes(
    store: ObjectStore, changes: dict[str, trees.Entry | None], blobs: list[Blob]
) -> None:
    """``InvalidPath`` unless every entry the merge writes follows the path rules: the
    source's tree may predate them, and a conflict resolved with their side's text keeps
    our mode (their file's content can become our symlink's target)."""
    new = {blob.id.decode(): blob for blob in blobs}
    for path, entry in changes.items():
        if entry is not None:
            paths.check_entry(path, entry[0], partial(_data, store, new, entry[1]))


def _data(store: ObjectStore, new: dict[str, Blob], sha: str) -> bytes:
    blob = new.get(sha)
    return (blob if blob is not None else store.get(sha)).as_raw_string()


def _base_tree(store: ObjectStore, source: dict[str, Any], target: dict[str, Any]) -> str:
    """The tree of the merge base: the nearest common ancestor of the two sessions' last
    commits (a working tree committed for the merge would only be a child of its last
    commit, so it cannot change the answer), else the source's base — the fork point."""
    ours, theirs = target["commit_head"], source["commit_head"]
    if ours is not None and theirs is not None:
        found = merge_base(store, ours, theirs)
        if found is not None:
            return _tree(store, found)
    return str(source["workspace"]["base"])


def merge(
    tx: Tx,
    account_id: str,
    source_id: str,
    target_id: str | None,
    strategy: str,
    message: str | None,
) -> dict[str, Any]:
    """Merge ``source_id``'s changes into ``target_id`` (default: the source's parent)."""
    if strategy not in STRATEGIES:
        raise invalid("strategy", "one of fail, ours, theirs, markers")
    source = kernel.load_for_write(tx, account_id, source_id)
    if target_id is None:
        if source["parent_id"] is None:
            raise invalid("targetSessionId", "this session has no parent: name the target")
        target_id = source["parent_id"]
    if target_id == source_id:
        raise invalid("targetSessionId", "a session cannot be merged into itself")
    target = kernel.load_for_write(tx, account_id, target_id)
    kernel.require_active(target)
    store = ObjectStore(tx, account_id)
    base_tree = _base_tree(store, source, target)
    ours_tree, theirs_tree = target["workspace"]["head"], source["workspace"]["head"]
    changes, blobs, conflicts = merge_trees(store, base_tree, ours_tree, theirs_tree, strategy)
    if not changes and not conflicts:  # the source has nothing the target lacks
        return {"status": "up_to_date", "commit": None, "conflicts": [], "files": []}
    if conflicts and strategy == "fail":
        raise MergeConflict(
            f"{len(conflicts)} conflicting path(s); nothing was written. Merge again with "
            "strategy ours, theirs or markers, or resolve the files first",
            details={"conflicts": conflicts},
        )
    _check_changes(store, changes, blobs)
    theirs_commit = commits.ensure_commit(tx, source, f"Snapshot of {source_id} for a merge")
    ours_commit = commits.ensure_commit(tx, target, f"Snapshot of {target_id} before a merge")
    write_changes(tx, target, store, changes, blobs, reason="merge")
    title = message or f"Merge session {source_id} into {target_id}"
    commit = commits.make(
        tx,
        target,
        target["workspace"]["head"],
        [ours_commit, theirs_commit],
        title,
        dict(commits.DEFAULT_AUTHOR),
    )
    # ``conflicts`` means markers were written; ours/theirs resolved every conflict (the
    # resolved paths are still listed).
    result = {
        "status": "conflicts" if conflicts and strategy == "markers" else "merged",
        "commit": commit,
        "conflicts": conflicts,
        "files": sorted(changes),
    }
    tx.emit(
        account_id,
        "session.merged",
        {
            "sourceSessionId": source_id,
            **{k: v for k, v in result.items() if k != "commit"},
            "commitId": commit["id"],
        },
        session_id=target_id,
        workspace_id=target["workspace_id"],
    )
    return result
