"""Diff between two trees (base, working tree, checkpoints): per-file status with exact
rename detection, line counts, binary flag and git-format patches (``git apply`` takes
them). Trees are immutable, so results are cached by (account, from tree, to tree)."""

from __future__ import annotations

import base64
import io
import re
import threading
import zlib
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa
from dulwich.objects import ObjectID, ShaFile
from dulwich.patch import write_object_diff

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import NotFound, invalid
from sessiond.files import trees
from sessiond.files.objects import ObjectStore
from sessiond.files.stats import is_binary, line_delta
from sessiond.sessions import kernel

SHA = re.compile(r"[0-9a-f]{40}")
CACHE_SIZE = 256
_cache: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
_cache_lock = threading.Lock()


class _Store:
    """The read side of dulwich's object store over ours (what ``write_object_diff`` uses)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def __getitem__(self, sha: bytes) -> ShaFile:
        return self.store.get(sha.decode())


def checkpoint_not_found(checkpoint_id: str) -> NotFound:
    return NotFound(f"checkpoint {checkpoint_id} not found in this session")


def checkpoint_tree(tx: Tx, account_id: str, session_id: str, checkpoint_id: str) -> str:
    """The tree a checkpoint of this session names (``?at=``, sources, annotation
    targets). Scoped by account and session: another session's checkpoint is not found.
    (A read of the ``checkpoints`` table; ``versions.checkpoints`` writes it.)"""
    row = kernel.fetch_one(
        tx, t.checkpoints, account_id, session_id, checkpoint_id, checkpoint_not_found
    )
    return str(row["tree"])


def resolve(
    tx: Tx,
    account_id: str,
    session_id: str,
    ref: str | None,
    default: str,
    field: str,
    ws: dict[str, Any] | None = None,
) -> str:
    """A tree sha from ``base`` / ``head`` (the working tree) / a checkpoint or commit id.
    ``ws``: the session's workspace object, when the caller has read it already."""
    if ws is None:
        ws = kernel.get_workspace(tx, account_id, session_id)
    ref = ref or default
    if ref == "base":
        return str(ws["base"])
    if ref in ("head", "working"):
        return str(ws["head"])
    if ref.startswith("cp_"):
        return checkpoint_tree(tx, account_id, session_id, ref)
    if SHA.fullmatch(ref):
        found = tx.conn.execute(
            sa.select(t.commits.c.tree).where(
                t.commits.c.session_id == session_id,
                t.commits.c.sha == ref,
                t.commits.c.account_id == account_id,
            )
        ).first()
        if found is None:
            raise NotFound(f"commit {ref} not found in this session")
        return str(found[0])
    raise invalid(field, "base, head (the working tree), a checkpoint id or a commit id")


def _side(path: str, entry: trees.Entry | None) -> tuple[Any, Any, Any]:
    if entry is None:
        return None, None, None
    return path.encode(), entry[0], ObjectID(entry[1].encode())


def _patch(store: ObjectStore, path: str, a: trees.Entry | None, b: trees.Entry | None) -> bytes:
    out = io.BytesIO()
    write_object_diff(out, _Store(store), _side(path, a), _side(path, b))  # type: ignore[arg-type]
    return out.getvalue()


ZERO = "0" * 40


def _b85_lines(data: bytes) -> str:
    """Git's binary-patch encoding: zlib, then lines of up to 52 bytes in base85, each
    prefixed with its length (A-Z = 1-26, a-z = 27-52)."""
    packed = zlib.compress(data)
    out = []
    for i in range(0, len(packed), 52):
        chunk = packed[i : i + 52]
        n = len(chunk)
        size = chr(ord("A") + n - 1) if n <= 26 else chr(ord("a") + n - 27)
        out.append(size + base64.b85encode(chunk, pad=True).decode() + "\n")
    return "".join(out)


def _binary_patch(
    store: ObjectStore, path: str, a: trees.Entry | None, b: trees.Entry | None
) -> bytes:
    """A ``GIT binary patch`` (full index, literal forward and reverse hunks)."""
    old = store.get(a[1]).as_raw_string() if a else b""
    new = store.get(b[1]).as_raw_string() if b else b""
    head = f"diff --git a/{path} b/{path}\n"
    if a is None and b is not None:
        head += f"new file mode {b[0]:06o}\nindex {ZERO}..{b[1]}\n"
    elif b is None and a is not None:
        head += f"deleted file mode {a[0]:06o}\nindex {a[1]}..{ZERO}\n"
    elif a is not None and b is not None:
        head += f"index {a[1]}..{b[1]} {b[0]:06o}\n"
    body = (
        f"GIT binary patch\nliteral {len(new)}\n{_b85_lines(new)}\n"
        f"literal {len(old)}\n{_b85_lines(old)}\n"
    )
    return (head + body).encode()


def _rename_patch(old_path: str, new_path: str) -> bytes:
    return (
        f"diff --git a/{old_path} b/{new_path}\nsimilarity index 100%\n"
        f"rename from {old_path}\nrename to {new_path}\n"
    ).encode()


def compute(tx: Tx, account_id: str, a: str, b: str) -> dict[str, Any]:
    """``{"files": [...], "summary": {...}, "patch": bytes}`` from tree ``a`` to tree ``b``."""
    key = (account_id, a, b)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    store = ObjectStore(tx, account_id)
    changes = list(trees.diff(store, a, b))
    added = {new[1]: path for path, old, new in changes if old is None and new is not None}
    renamed: dict[str, str] = {}  # old path → new path (same content: an exact rename)
    for path, old, new in changes:
        if new is None and old is not None and old[1] in added:
            renamed[path] = added.pop(old[1])
    renamed_to = set(renamed.values())
    files: list[dict[str, Any]] = []
    patch = io.BytesIO()
    for path, old, new in changes:
        if path in renamed_to:
            continue
        if path in renamed:
            text = _rename_patch(path, renamed[path])
            files.append(
                {
                    "path": renamed[path],
                    "oldPath": path,
                    "status": "renamed",
                    "additions": 0,
                    "deletions": 0,
                    "binary": False,
                    "patch": text.decode(),
                }
            )
            patch.write(text)
            continue
        old_data = store.get(old[1]).as_raw_string() if old else b""
        new_data = store.get(new[1]).as_raw_string() if new else b""
        binary = is_binary(old_data) or is_binary(new_data)
        additions, deletions = line_delta(old_data, new_data)
        make = _binary_patch if binary else _patch
        text = make(store, path, old, new)
        status = "added" if old is None else "deleted" if new is None else "modified"
        files.append(
            {
                "path": path,
                "status": status,
                "additions": additions,
                "deletions": deletions,
                "binary": binary,
                "patch": text.decode("utf-8", "replace"),
            }
        )
        patch.write(text)
    result = {
        "files": files,
        "summary": {
            "files": len(files),
            "additions": sum(f["additions"] for f in files),
            "deletions": sum(f["deletions"] for f in files),
        },
        "patch": patch.getvalue(),
    }
    with _cache_lock:
        _cache[key] = result
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def diff(
    tx: Tx, account_id: str, session_id: str, from_: str | None, to: str | None
) -> dict[str, Any]:
    ws = kernel.get_workspace(tx, account_id, session_id)
    a = resolve(tx, account_id, session_id, from_, "base", "from", ws)
    b = resolve(tx, account_id, session_id, to, "head", "to", ws)
    return compute(tx, account_id, a, b)
