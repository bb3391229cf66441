"""Snapshot: the files of a tree as a gzip tar (spooled to disk above 8 MiB).

Defense in depth: an entry that breaks the workspace path rules (a tree stored before
they applied to every tree) is left out, so the archive never extracts outside its root.
"""

from __future__ import annotations

import io
import stat
import tarfile
import tempfile
from typing import IO

from sessiond.db.executor import Tx
from sessiond.files import paths, trees
from sessiond.files.diff import resolve
from sessiond.files.objects import ObjectStore


def _extractable(store: ObjectStore, item: trees.Item) -> bool:
    """Whether ``item`` follows the path rules (a symlink's target stays inside too)."""
    reason = paths.entry_reason(item.path, item.mode, lambda: store.get(item.sha).as_raw_string())
    return reason is None


def build(
    tx: Tx, account_id: str, session_id: str, at: str | None, *, spool_bytes: int
) -> IO[bytes]:
    """A gzip tar of the working tree (or checkpoint ``at``), rewound, ready to stream."""
    root = resolve(tx, account_id, session_id, at, "head", "at")
    store = ObjectStore(tx, account_id)
    out = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 (the caller closes it)
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for item in trees.walk(store, root, "", recursive=True):
            if not _extractable(store, item):
                continue
            data = store.get(item.sha).as_raw_string()
            info = tarfile.TarInfo(item.path)
            info.mtime = 0
            if stat.S_ISLNK(item.mode):
                info.type = tarfile.SYMTYPE
                info.linkname = data.decode("utf-8", "surrogateescape")
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o755 if item.mode == trees.EXECUTABLE else 0o644
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out
