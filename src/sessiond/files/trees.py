"""Trees: look up a path, list a directory, and apply a set of path changes.

A change set maps paths to a new entry ``(mode, blob sha)`` or ``None`` (delete). Applying
it rebuilds only the trees on the changed paths (bottom-up) and shares every other tree
with the previous version. Git has no empty directories: a directory left empty goes.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dulwich.objects import ObjectID, ShaFile, Tree

from sessiond.errors import Conflict, InvalidPath
from sessiond.files.objects import ObjectStore
from sessiond.sessions.figures import EMPTY_TREE

FILE = 0o100644
EXECUTABLE = 0o100755
SYMLINK = 0o120000
DIRECTORY = 0o040000

Entry = tuple[int, str]  # (mode, sha)


def kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file"


def _tree(store: ObjectStore, sha: str) -> Tree:
    if sha == EMPTY_TREE:  # every session starts here; it needs no stored object
        return Tree()
    obj = store.get(sha)
    assert isinstance(obj, Tree), f"{sha} is not a tree"
    return obj


def _through_symlink(path: str, upto: int) -> InvalidPath:
    parent = "/".join(path.split("/")[:upto])
    reason = f"{parent} is a symlink; paths may not go through symlinks"
    return InvalidPath(
        f"path: {reason}", details={"errors": [{"field": "path", "message": reason}]}
    )


def lookup(store: ObjectStore, root: str, path: str) -> Entry | None:
    """The entry at ``path`` (``""`` = the root directory), or None if nothing is there.

    A parent that is a symlink is an escape: ``InvalidPath``. A parent that is a file
    means nothing is there.
    """
    if path == "":
        return DIRECTORY, root
    sha = root
    names = path.split("/")
    for i, name in enumerate(names):
        tree = _tree(store, sha)
        try:
            mode, child = tree[name.encode()]
        except KeyError:
            return None
        if i == len(names) - 1:
            return mode, child.decode()
        if stat.S_ISLNK(mode):
            raise _through_symlink(path, i + 1)
        if not stat.S_ISDIR(mode):
            return None
        sha = child.decode()
    return None  # pragma: no cover - the loop always returns


def check_parents(store: ObjectStore, root: str, path: str) -> None:
    """``InvalidPath`` if a parent of ``path`` is a symlink; ``Conflict`` if it is a file."""
    names = path.split("/")
    sha = root
    for i, name in enumerate(names[:-1]):
        tree = _tree(store, sha)
        try:
            mode, child = tree[name.encode()]
        except KeyError:
            return
        if stat.S_ISLNK(mode):
            raise _through_symlink(path, i + 1)
        if not stat.S_ISDIR(mode):
            parent = "/".join(names[: i + 1])
            raise Conflict(
                f"{path}: {parent} is a file, not a directory; delete or rename it first",
                details={"path": path, "file": parent},
            )
        sha = child.decode()


@dataclass(frozen=True)
class Item:
    path: str
    mode: int
    sha: str


def walk(store: ObjectStore, root: str, prefix: str, *, recursive: bool) -> Iterator[Item]:
    """Entries under directory ``prefix`` in path order. Not recursive: the directory's own
    entries (files, symlinks, directories). Recursive: every file and symlink below it."""
    tree = _tree(store, root)
    for entry in tree.iteritems():
        name = entry.path.decode("utf-8", "surrogateescape")
        path = f"{prefix}/{name}" if prefix else name
        if stat.S_ISDIR(entry.mode):
            if recursive:
                yield from walk(store, entry.sha.decode(), path, recursive=True)
            else:
                yield Item(path, entry.mode, entry.sha.decode())
        else:
            yield Item(path, entry.mode, entry.sha.decode())


def apply(store: ObjectStore, root: str, changes: dict[str, Entry | None]) -> str:
    """The root of ``root`` with ``changes`` applied; new trees are added to ``store``."""
    nested: dict[str, Any] = {}
    for path, entry in changes.items():
        node = nested
        names = path.split("/")
        for i, name in enumerate(names[:-1]):
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise Conflict(
                    f"{path}: {'/'.join(names[: i + 1])} is written as a file in the same request",
                    details={"path": path},
                )
            node = child
        leaf = names[-1]
        if isinstance(node.get(leaf), dict):
            raise Conflict(
                f"{path} is a directory of other paths in the same request",
                details={"path": path},
            )
        node[leaf] = entry
    new: list[ShaFile] = []
    sha = _edit(store, root, nested, new, "")
    if sha is None:
        empty = Tree()
        new.append(empty)
        sha = empty.id.decode()
    store.add(new)
    return sha


def _edit(
    store: ObjectStore, sha: str | None, changes: dict[str, Any], new: list[ShaFile], at: str
) -> str | None:
    old = _tree(store, sha) if sha is not None else Tree()
    tree = Tree()
    for entry in old.iteritems():
        tree.add(entry.path, entry.mode, entry.sha)
    for name, change in changes.items():
        key = name.encode()
        path = f"{at}/{name}" if at else name
        existing = old[key] if key in old else None  # noqa: SIM401 (a Tree has no .get)
        if isinstance(change, dict):
            sub: str | None = None
            if existing is not None:
                mode, child = existing
                if stat.S_ISLNK(mode):
                    raise _through_symlink(path + "/x", len(path.split("/")))
                if not stat.S_ISDIR(mode):
                    raise Conflict(
                        f"{path} is a file, not a directory; delete or rename it first",
                        details={"path": path},
                    )
                sub = child.decode()
            result = _edit(store, sub, change, new, path)
            if result is None:
                if key in tree:
                    del tree[key]
            else:
                tree.add(key, DIRECTORY, ObjectID(result.encode()))
        elif change is None:
            if key in tree:
                del tree[key]
        else:
            if existing is not None and stat.S_ISDIR(existing[0]):
                raise Conflict(
                    f"{path} is a directory; a file cannot replace it",
                    details={"path": path},
                )
            mode, blob = change
            tree.add(key, mode, ObjectID(blob.encode()))
    if len(tree) == 0:
        return None
    new.append(tree)
    return tree.id.decode()


def diff(
    store: ObjectStore, a: str, b: str, at: str = ""
) -> Iterator[tuple[str, Entry | None, Entry | None]]:
    """``(path, entry in a, entry in b)`` for every file or symlink that differs between
    trees ``a`` and ``b``, in path order. Identical subtrees are skipped unread."""
    if a == b:
        return
    left = {e.path: (e.mode, e.sha.decode()) for e in _tree(store, a).iteritems()}
    right = {e.path: (e.mode, e.sha.decode()) for e in _tree(store, b).iteritems()}
    for key in sorted(set(left) | set(right)):
        name = key.decode("utf-8", "surrogateescape")
        path = f"{at}/{name}" if at else name
        x, y = left.get(key), right.get(key)
        if x == y:
            continue
        x_dir = x is not None and stat.S_ISDIR(x[0])
        y_dir = y is not None and stat.S_ISDIR(y[0])
        if x_dir or y_dir:
            yield from diff(
                store,
                x[1] if x is not None and x_dir else EMPTY_TREE,
                y[1] if y is not None and y_dir else EMPTY_TREE,
                path,
            )
        if not x_dir or not y_dir:
            xf = None if x_dir else x
            yf = None if y_dir else y
            if xf != yf:
                yield path, xf, yf
