"""A session's sandbox directory: written from the working tree, read back into it.

The directory is a sandbox's ``work/`` (``sandbox.layout``). ``manifest`` + ``materialize``
write the working tree into it; ``scan`` reads it back (in a worker thread: no database),
and ``save`` (one transaction) writes every difference into the working tree with
``files.changed`` (``reason: "agent"``). What may not be saved is reported in
``skipped``, never guessed at: a file over the file limit, a special file (fifo, socket,
device), a symlink that leaves the directory, a name the path rules refuse (``.git``).
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dulwich.objects import Blob

from sessiond.db.executor import Tx
from sessiond.errors import Conflict, InvalidPath
from sessiond.files import paths, trees
from sessiond.files import service as files
from sessiond.files.objects import ObjectStore
from sessiond.sessions import kernel
from sessiond.settings import Limits

Manifest = dict[str, trees.Entry]  # path → (mode, blob sha): files and symlinks only


@dataclass
class Scan:
    """The directory as found: a blob per path that differs from ``base``."""

    base: Manifest
    found: Manifest = field(default_factory=dict)
    blobs: dict[str, Blob] = field(default_factory=dict)  # sha → new blob
    skipped: list[dict[str, str]] = field(default_factory=list)


def manifest(tx: Tx, account_id: str, session_id: str) -> Manifest:
    """The working tree's files and symlinks."""
    root = kernel.get_row(tx, account_id, session_id)["workspace"]["head"]
    store = ObjectStore(tx, account_id)
    return {i.path: (i.mode, i.sha) for i in trees.walk(store, root, "", recursive=True)}


def entries_at(
    tx: Tx, account_id: str, session_id: str, paths: list[str]
) -> tuple[Manifest, dict[str, bytes]]:
    """The working tree's entries at ``paths`` (files and symlinks; a path that is absent,
    or a directory now, is left out) and their contents: what an API write changed."""
    root = kernel.get_row(tx, account_id, session_id)["workspace"]["head"]
    store = ObjectStore(tx, account_id)
    found: Manifest = {}
    for path in paths:
        try:
            entry = trees.lookup(store, root, path)
        except (InvalidPath, Conflict):
            continue
        if entry is not None and trees.kind(entry[0]) != "dir":
            found[path] = entry
    return found, contents(tx, account_id, [sha for _, sha in found.values()])


def contents(tx: Tx, account_id: str, shas: list[str]) -> dict[str, bytes]:
    """The bytes of the blobs ``shas`` (a missing one is left out)."""
    return ObjectStore(tx, account_id).raw_many(sorted(set(shas)))


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def write_entry(root: Path, path: str, mode: int, data: bytes, uid: int | None = None) -> None:
    """Write one working-tree entry into the directory (parents made; whatever was at the
    path replaced), owned by ``uid`` when given (the sandbox's own uid). ``path`` follows
    the path rules: it stays below ``root``."""
    target = root / path
    parent = target.parent
    # A parent that is a file or a symlink is replaced by a directory (the tree says so).
    missing = []
    for up in reversed([parent, *parent.parents]):
        if up == root or root not in up.parents:
            continue
        if up.is_symlink() or (up.exists() and not up.is_dir()):
            up.unlink()
        if not up.exists():
            missing.append(up)
    for folder in missing:
        folder.mkdir()
        _own(folder, uid)
    if target.is_symlink() or target.exists():
        _remove(target)
    if mode == trees.SYMLINK:
        os.symlink(data, target)
        _own(target, uid)
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        if uid is not None:
            os.fchown(f.fileno(), uid, uid)
    if mode == trees.EXECUTABLE:
        os.chmod(target, 0o755)


def _own(path: Path, uid: int | None) -> None:
    if uid is not None:
        os.lchown(path, uid, uid)


def materialize(
    root: Path, entries: Manifest, data: dict[str, bytes], uid: int | None = None
) -> None:
    """Make ``root`` hold exactly ``entries`` (a fresh directory), owned by ``uid``.

    The directory is new and only this writes into it, so nothing in it can be in the
    way (no symlink, no file where a folder goes): each folder is made once and each
    file created directly, a few system calls per entry (``write_entry`` checks every
    parent, for a directory an agent may have changed)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _own(root, uid)
    base = str(root)
    made = {""}
    for path, (mode, sha) in sorted(entries.items()):
        folder = path.rpartition("/")[0]
        if folder not in made:
            parts = folder.split("/")
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in made:
                    os.mkdir(f"{base}/{sub}", 0o755)
                    if uid is not None:
                        os.chown(f"{base}/{sub}", uid, uid)
                    made.add(sub)
        target = f"{base}/{path}"
        if mode == trees.SYMLINK:
            os.symlink(data[sha], target)
            if uid is not None:
                os.lchown(target, uid, uid)
            continue
        perms = 0o755 if mode == trees.EXECUTABLE else 0o644
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perms)
        try:
            _write_all(fd, data[sha])
            if uid is not None:
                os.fchown(fd, uid, uid)
            if mode == trees.EXECUTABLE:
                os.fchmod(fd, 0o755)  # the umask may have taken bits away
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def remove_entry(root: Path, path: str) -> None:
    target = root / path
    if target.is_symlink() or target.exists():
        _remove(target)


def remove(root: Path) -> None:
    """Remove the directory (stopping nothing: the caller stopped the agent)."""
    shutil.rmtree(root, ignore_errors=True)


def _mode(st: os.stat_result) -> int:
    return trees.EXECUTABLE if st.st_mode & 0o111 else trees.FILE


def scan(root: Path, base: Manifest, limits: Limits) -> Scan:
    """Read the directory (no database): every file and symlink, compared with ``base``.
    Symlinks are not followed; directories named ``.git`` are not entered."""
    out = Scan(base=base)

    def skip(path: str, reason: str) -> None:
        out.skipped.append({"path": path, "reason": reason})

    def visit(directory: Path, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            skip(prefix or ".", f"not readable: {e.strerror}")
            return
        for entry in entries:
            path = f"{prefix}/{entry.name}" if prefix else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                skip(path, f"not readable: {e.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name.lower() == ".git":
                    continue  # the agent's own repository: never part of a workspace
                reason = paths.entry_reason(path, trees.DIRECTORY, bytes)
                if reason is not None:
                    skip(path, reason)
                    continue
                visit(Path(entry.path), path)
                continue
            if stat.S_ISLNK(st.st_mode):
                mode, data = trees.SYMLINK, os.fsencode(os.readlink(entry.path))
            elif stat.S_ISREG(st.st_mode):
                if st.st_size > limits.file_bytes:
                    skip(path, f"over the file limit ({st.st_size} > {limits.file_bytes} bytes)")
                    continue
                mode = _mode(st)
                try:
                    with open(entry.path, "rb") as f:
                        data = f.read(limits.file_bytes + 1)
                except OSError as e:
                    skip(path, f"not readable: {e.strerror}")
                    continue
                if len(data) > limits.file_bytes:
                    skip(path, f"over the file limit ({limits.file_bytes} bytes)")
                    continue
            else:
                skip(path, "a special file (fifo, socket or device) is not saved")
                continue
            reason = paths.entry_reason(path, mode, lambda d=data: d)  # type: ignore[misc]
            if reason is not None:
                skip(path, reason)
                continue
            blob = Blob.from_string(data)
            sha = blob.id.decode()
            out.found[path] = (mode, sha)
            if base.get(path) != (mode, sha):
                out.blobs[sha] = blob

    visit(root, "")
    return out


def save(tx: Tx, account_id: str, session_id: str, found: Scan, reason: str = "agent") -> list[str]:
    """Write what ``scan`` found into the working tree (one transaction): changed and new
    entries, and deletions of what the directory no longer has. A path changed in the
    working tree since ``found.base`` was read (an API write) is not deleted. Returns the
    changed paths (nothing when the session is no longer active)."""
    row = kernel.load_for_write(tx, account_id, session_id)
    if row["status"] != "active":
        return []
    store = ObjectStore(tx, account_id)
    now = {
        i.path: (i.mode, i.sha)
        for i in trees.walk(store, row["workspace"]["head"], "", recursive=True)
    }
    changes: dict[str, trees.Entry | None] = {}
    for path, entry in found.found.items():
        if now.get(path) != entry:
            changes[path] = entry
    skipped = {s["path"] for s in found.skipped}
    for path, entry in found.base.items():
        if path not in found.found and path not in skipped and now.get(path) == entry:
            changes[path] = None
    # A file that became a directory (or the reverse) in the directory: the tree's entry
    # under a new directory's name goes with it.
    for path in list(changes):
        if changes[path] is not None:
            for parent in _parents(path):
                if parent in now and parent not in found.found:
                    changes[parent] = None
    if not changes:
        return []
    blobs = [found.blobs[e[1]] for e in changes.values() if e is not None and e[1] in found.blobs]
    files.write_changes(tx, row, store, changes, blobs, reason=reason)
    return sorted(changes)


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def save_one(
    tx: Tx, limits: Limits, account_id: str, session_id: str, path: str, data: bytes
) -> dict[str, Any] | None:
    """Save one file the agent wrote through ``fs/write_text_file`` (its mode kept when
    the file existed). Returns the new workspace, or None when the session is not active."""
    row = kernel.load_for_write(tx, account_id, session_id)
    if row["status"] != "active":
        return None
    store = ObjectStore(tx, account_id)
    old = trees.lookup(store, row["workspace"]["head"], path)
    mode = old[0] if old is not None and old[0] in (trees.FILE, trees.EXECUTABLE) else trees.FILE
    blob = Blob.from_string(data)
    changes: dict[str, trees.Entry | None] = {path: (mode, blob.id.decode())}
    return files.write_changes(tx, row, store, changes, [blob], reason="agent")
