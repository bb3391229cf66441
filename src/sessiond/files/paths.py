"""The workspace path rules (API.md, Workspace): files, batches, annotation targets, and
every tree that enters a session some other way (git push, merge) or leaves it (snapshot).

A path is relative, ``/``-separated and normalized: not empty, valid UTF-8, no leading
``/``, no empty, ``.`` or ``..`` segment, no ``\\``, no NUL, no ``.git`` component (any
case), at most 4,096 bytes in all and 255 bytes per name. Anything else → 422
``invalid_path`` naming the field.

A tree entry also has a mode git checks out as a plain file, an executable, a symlink or
a directory (no submodules), and a symlink's target is relative, not empty, without NUL
or ``.git``, and stays inside the workspace: resolved from the link's directory it never
climbs above the root, and it climbs only with leading ``..`` segments (a ``..`` after a
name could climb out through another symlink: ``sub/up -> ..`` then ``x -> sub/up/..``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

from dulwich.objects import Blob, ShaFile, Tree, serialize_tree

from sessiond.errors import InvalidPath
from sessiond.files.trees import DIRECTORY, EXECUTABLE, FILE, SYMLINK
from sessiond.models import NAME_BYTES, PATH_BYTES
from sessiond.sessions.figures import EMPTY_TREE

MODES = frozenset({FILE, EXECUTABLE, SYMLINK, DIRECTORY})

GetObject = Callable[[str], ShaFile]  # hex sha → object; KeyError when absent
_T = TypeVar("_T", Tree, Blob)


def _reason(path: str) -> str | None:
    if path == "":
        return "must not be empty"
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if "\x00" in path:
        return "must not contain NUL"
    if "\\" in path:
        return "must use / as separator (no \\)"
    if size > PATH_BYTES:
        return f"at most {PATH_BYTES} bytes"
    if path.startswith("/"):
        return "must be relative (no leading /)"
    for name in path.split("/"):
        if name == "..":
            return "must not contain a .. segment"
        if name in ("", "."):
            return "must be normalized (no empty or . segment, no trailing /)"
        if name.lower() == ".git":
            return "must not be inside .git"
        if len(name.encode("utf-8")) > NAME_BYTES:
            return f"a name is at most {NAME_BYTES} bytes"
    return None


def check_path(path: str, field: str) -> None:
    """Raise ``InvalidPath`` (422 ``invalid_path``) unless ``path`` follows the rules."""
    reason = _reason(path)
    if reason is not None:
        raise InvalidPath(
            f"{field}: {reason}; paths are relative to the workspace root, like src/app.py",
            details={"errors": [{"field": field, "message": reason}]},
        )


def _show(text: str | bytes) -> str:
    """``text`` as a one-line message can carry it: as is when printable UTF-8, else as a
    bytes literal (invalid UTF-8, NUL, newlines and the empty name stay visible)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    shown = raw.decode("utf-8", "surrogateescape")
    return shown if shown and shown.isprintable() else repr(raw)


def _refused(where: str, reason: str) -> InvalidPath:
    return InvalidPath(
        f"{where}: {reason}", details={"errors": [{"field": "path", "message": reason}]}
    )


def _target_reason(path: str, target: bytes) -> str | None:
    """Why symlink ``path`` may not point to ``target``, or None."""
    if target == b"":
        return "a symlink target must not be empty"
    if b"\x00" in target:
        return "a symlink target must not contain NUL"
    if target.startswith(b"/"):
        return f"symlink target {_show(target)} must be relative (no leading /)"
    if len(target) > PATH_BYTES:
        return f"a symlink target is at most {PATH_BYTES} bytes"
    level = path.count("/")  # directories between the root and the link
    named = climbs_after_name = False
    for part in target.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            level -= 1
            if level < 0:
                return f"symlink target {_show(target)} points outside the workspace"
            climbs_after_name = climbs_after_name or named
        elif part.lower() == b".git":
            return f"symlink target {_show(target)} must not point into .git"
        else:
            level += 1
            named = True
    if climbs_after_name:
        return f"symlink target {_show(target)} may use .. only at its start"
    return None


def entry_reason(path: str, mode: int, target: Callable[[], bytes]) -> str | None:
    """Why a tree entry at ``path`` with ``mode`` may not be in a workspace, or None.
    ``target()`` gives a symlink's content; it is called for a symlink only."""
    reason = _reason(path)
    if reason is None and mode not in MODES:
        reason = (
            f"mode {mode:06o} is not allowed (only 100644, 100755, 120000, 040000: no submodules)"
        )
    if reason is None and mode == SYMLINK:
        reason = _target_reason(path, target())
    return reason


def check_entry(path: str, mode: int, target: Callable[[], bytes]) -> None:
    """Raise ``InvalidPath`` naming ``path`` unless the entry follows the rules
    (``entry_reason``)."""
    reason = entry_reason(path, mode, target)
    if reason is not None:
        raise _refused(f"path {_show(path)}", reason)


def _load(get_object: GetObject, sha: str, where: str, kind: type[_T]) -> _T:
    try:
        obj = get_object(sha)
    except KeyError:
        raise _refused(where, f"object {sha} is missing") from None
    if not isinstance(obj, kind):
        raise _refused(where, f"object {sha} is a {obj.type_name.decode()}, not a {kind.__name__}")
    return obj


def _target(get_object: GetObject, sha: str, path: str) -> bytes:
    return _load(get_object, sha, f"path {_show(path)}", Blob).as_raw_string()


def _child(prefix: str, name: bytes) -> str:
    """The path of entry ``name`` in directory ``prefix``; ``InvalidPath`` if the name is
    not valid UTF-8 or holds a ``/`` (which a path could not tell from a directory)."""
    shown = _show(prefix.encode() + b"/" + name if prefix else name)
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(f"path {shown}", "must be valid UTF-8") from None
    if "/" in text:
        raise _refused(f"path {shown}", "a name must not contain /")
    return f"{prefix}/{text}" if prefix else text


def _check_canonical(tree: Tree, where: str) -> None:
    """Refuse a tree git would not write (duplicate or unsorted entries, zero-padded
    modes): git and dulwich could read two different trees from it."""
    if b"".join(serialize_tree(tree.iteritems())) != tree.as_raw_string():
        raise _refused(where, "the tree is not in git's form (duplicate or unsorted entries)")


def check_tree(
    get_object: GetObject, *roots: str, has: Callable[[str], bool] | None = None
) -> None:
    """Raise ``InvalidPath`` naming an entry, anywhere below the trees ``roots``,
    that breaks the rules (``entry_reason``, plus: names valid UTF-8 without ``/``, trees
    in git's form, every subtree and symlink present, and every file too when ``has``
    tells which objects exist). Reads every subtree and symlink through ``get_object``
    (``ObjectStore.get``, or a dulwich object store's lookup), so call it before anything
    is written; a subtree met twice at the same path is read once.
    """
    pending = [("", root) for root in roots]
    done: set[tuple[str, str]] = set()
    while pending:
        prefix, sha = pending.pop()
        if sha == EMPTY_TREE or (prefix, sha) in done:
            continue
        done.add((prefix, sha))
        where = f"path {_show(prefix)}" if prefix else "the root tree"
        tree = _load(get_object, sha, where, Tree)
        _check_canonical(tree, where)
        for entry in tree.iteritems():
            path, child = _child(prefix, entry.path), entry.sha.decode()
            check_entry(path, entry.mode, partial(_target, get_object, child, path))
            if entry.mode == DIRECTORY:
                pending.append((path, child))
            elif has is not None and not has(child):
                raise _refused(f"path {_show(path)}", f"object {child} is missing")
