"""A sandbox's HOME kept across hibernation: a gzipped tar in ``sandbox_homes``.

The agent's own state lives in HOME (opencode keeps its sessions there), and
``session/load`` after a restore needs it. ``pack`` reads the directory (no database;
symlinks are kept as links, special files left out); ``unpack`` writes an archive back
with tarfile's ``data`` filter: no absolute paths, no ``..``, no links that leave the
directory, no device files. Over ``max_bytes`` (compressed) a HOME is not kept.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx

h = t.sandbox_homes


class TooLarge(Exception):
    """The HOME is larger than the limit once compressed."""


def pack(home: Path, max_bytes: int) -> bytes | None:
    """The archive of ``home`` (None when it is missing or empty)."""
    if not home.is_dir() or not any(home.iterdir()):
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for folder, dirs, files in os.walk(home):
            dirs.sort()
            for name in [*sorted(dirs), *sorted(files)]:
                path = Path(folder) / name
                mode = path.lstat().st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                    continue  # sockets, fifos, devices
                tar.add(path, arcname=str(path.relative_to(home)), recursive=False)
                if buffer.tell() > max_bytes:
                    raise TooLarge(f"over {max_bytes} bytes compressed")
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise TooLarge(f"over {max_bytes} bytes compressed")
    return data


def unpack(data: bytes, home: Path, uid: int | None) -> None:
    """Write the archive into ``home`` (which exists), owned by ``uid`` when given."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(home, filter=_safe)
    if uid is not None:
        for folder, dirs, files in os.walk(home):
            for name in [*dirs, *files]:
                os.lchown(Path(folder) / name, uid, uid)


def _safe(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's ``data`` filter, skipping (not failing on) what it refuses."""
    try:
        return tarfile.data_filter(member, path)
    except tarfile.FilterError:
        return None


def save(tx: Tx, account_id: str, session_id: str, data: bytes | None) -> None:
    """Keep ``data`` as the session's HOME (None: forget the one kept)."""
    tx.conn.execute(h.delete().where(h.c.session_id == session_id, h.c.account_id == account_id))
    if data is not None:
        tx.conn.execute(
            h.insert().values(
                session_id=session_id, account_id=account_id, data=data, created_at=tx.now
            )
        )


def load(tx: Tx, account_id: str, session_id: str) -> bytes | None:
    q = sa.select(h.c.data).where(h.c.session_id == session_id, h.c.account_id == account_id)
    found = tx.conn.execute(q).scalar()
    return bytes(found) if found is not None else None
