"""Paths an agent names, confined to its sandbox directory.

``relative(root, path)`` turns the agent's path (absolute, as ACP wants, or relative to
the root) into a workspace path that follows the path rules, or refuses it. Reads and
writes then open every component with ``O_NOFOLLOW`` relative to the directory above
(``openat``), so no symlink — one the agent made a moment ago included — can lead a
read or a write out of the directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from sessiond.files import paths


class Refused(Exception):
    """A path (or a request about one) refused: outside the directory, a symlink, not a
    file. The message says why; nothing was read or written."""


def relative(root: Path, path: str) -> str:
    """The workspace path of ``path`` (Refused when it is outside ``root`` or breaks
    the path rules)."""
    if "\x00" in path:
        raise Refused("a path must not contain NUL")
    absolute = os.path.normpath(path if os.path.isabs(path) else os.path.join(root, path))
    base = os.path.normpath(root)
    if absolute == base:
        raise Refused(f"{path}: a directory, not a file")
    if os.path.commonpath([absolute, base]) != base:
        raise Refused(f"{path}: outside the session's directory {base}")
    rel = os.path.relpath(absolute, base).replace(os.sep, "/")
    reason = paths.entry_reason(rel, 0o100644, bytes)
    if reason is not None:
        raise Refused(f"{path}: {reason}")
    return rel


@contextlib.contextmanager
def _parent(
    root: Path, rel: str, *, create: bool, uid: int | None = None
) -> Iterator[tuple[int, str]]:
    """``(fd of the directory holding rel, its last name)``, walking with O_NOFOLLOW;
    directories it creates are owned by ``uid`` when given."""
    names = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names[:-1]:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                else:
                    if uid is not None:
                        os.chown(name, uid, uid, dir_fd=fd, follow_symlinks=False)
            try:
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                raise Refused(f"{rel}: no such file") from None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused(
                        f"{rel}: {name} is a symlink or a file, not a directory"
                    ) from None
                raise
            os.close(fd)
            fd = nxt
        yield fd, names[-1]
    finally:
        os.close(fd)


def read(root: Path, rel: str, max_bytes: int) -> bytes:
    with _parent(root, rel, create=False) as (fd, name):
        try:
            f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            raise Refused(f"{rel}: no such file") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Refused(f"{rel}: a symlink (not followed)") from None
            raise Refused(f"{rel}: {e.strerror}") from None
        with os.fdopen(f, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise Refused(f"{rel}: not a regular file")
            data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Refused(f"{rel}: over the file limit ({max_bytes} bytes)")
    return data


def write(root: Path, rel: str, data: bytes, uid: int | None = None) -> None:
    """Write ``rel`` below ``root`` (never through a symlink), owned by ``uid`` if given."""
    with _parent(root, rel, create=True, uid=uid) as (fd, name):
        try:
            f = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd
            )
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Refused(f"{rel}: a symlink (not followed)") from None
            raise Refused(f"{rel}: {e.strerror}") from None
        with os.fdopen(f, "wb") as stream:
            if uid is not None:
                os.fchown(stream.fileno(), uid, uid)
            stream.write(data)


def slice_lines(text: str, line: int | None, limit: int | None) -> str:
    """ACP's ``line`` (1-based) and ``limit`` (lines) applied to ``text``."""
    if line is None and limit is None:
        return text
    lines = text.splitlines(keepends=True)
    start = max((line or 1) - 1, 0)
    end = start + limit if limit is not None else None
    return "".join(lines[start:end])
