"""File service: the manifest, raw reads, writes, deletes and atomic batches.

A write validates every path first, applies all its operations to the working tree in
memory, stores the new objects, moves ``workspace.head``, brings the per-path change
figures up to date and emits ``files.changed`` — one transaction, all or nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from dulwich.objects import Blob
from pydantic import ValidationError

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import (
    Conflict,
    InvalidPath,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ValidationFailed,
    invalid,
)
from sessiond.files import trees
from sessiond.files.diff import resolve
from sessiond.files.models import MAX_BATCH_OPERATIONS, OPS, DeleteOp, RenameOp, WriteOp
from sessiond.files.objects import ObjectStore
from sessiond.files.paths import check_path
from sessiond.files.stats import line_delta
from sessiond.pagination import decode_cursor, encode_cursor
from sessiond.sessions import figures, kernel
from sessiond.settings import Limits

MANIFEST_DEFAULT_LIMIT = 1000
MANIFEST_MAX_LIMIT = 10_000


def file_not_found(path: str) -> NotFound:
    return NotFound(f"no file at {path} in this session's working tree")


# -- reads ---------------------------------------------------------------------------------


def _head(tx: Tx, account_id: str, session_id: str) -> str:
    return str(kernel.get_workspace(tx, account_id, session_id)["head"])


def _sizes(tx: Tx, account_id: str, shas: list[str]) -> dict[str, int]:
    if not shas:
        return {}
    g = t.git_objects
    rows = tx.conn.execute(
        sa.select(g.c.sha, g.c.size).where(g.c.account_id == account_id, g.c.sha.in_(shas))
    )
    return {r.sha: r.size for r in rows}


def list_files(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    path: str = "",
    recursive: bool = False,
    at: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The entries under directory ``path`` (``""`` = the root), in path order, of the
    working tree or of checkpoint ``at``."""
    if limit is not None and not 1 <= limit <= MANIFEST_MAX_LIMIT:
        raise invalid("limit", f"must be between 1 and {MANIFEST_MAX_LIMIT}")
    limit = limit or MANIFEST_DEFAULT_LIMIT
    if path:
        check_path(path, "path")
    after = decode_cursor(cursor, "files")["p"] if cursor else None
    store = ObjectStore(tx, account_id)
    if at is None:
        root = _head(tx, account_id, session_id)
    else:
        root = resolve(tx, account_id, session_id, at, "head", "at")
    entry = trees.lookup(store, root, path)
    if entry is None:
        raise NotFound(f"no directory at {path} in this session's working tree")
    if trees.kind(entry[0]) != "dir":
        raise invalid("path", f"{path} is a {trees.kind(entry[0])}, not a directory")
    items = []
    for item in trees.walk(store, entry[1], path, recursive=recursive):
        if after is not None and item.path <= after:
            continue
        items.append(item)
        if len(items) > limit:
            break
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        next_cursor = encode_cursor({"k": "files", "p": items[-1].path})
    sizes = _sizes(tx, account_id, [i.sha for i in items if trees.kind(i.mode) != "dir"])
    entries = [
        {
            "path": i.path,
            "type": trees.kind(i.mode),
            "size": sizes.get(i.sha) if trees.kind(i.mode) != "dir" else None,
            "sha": i.sha,
            "mode": f"{i.mode:06o}",
        }
        for i in items
    ]
    return entries, next_cursor


def read_file(tx: Tx, account_id: str, session_id: str, path: str) -> tuple[bytes, str]:
    """``(content, blob sha)`` of the file (or symlink target) at ``path``."""
    check_path(path, "path")
    store = ObjectStore(tx, account_id)
    entry = trees.lookup(store, _head(tx, account_id, session_id), path)
    if entry is None or trees.kind(entry[0]) == "dir":
        raise file_not_found(path)
    blob = store.get(entry[1])
    assert isinstance(blob, Blob)
    return blob.as_raw_string(), entry[1]


# -- writes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawWrite:
    """A write whose content is already bytes (``PUT .../files/{path}``)."""

    path: str
    data: bytes


Operation = WriteOp | DeleteOp | RenameOp | RawWrite


@dataclass
class Planned:
    """A batch turned into a change set, plus what to answer for each operation."""

    changes: dict[str, trees.Entry | None]
    results: list[dict[str, Any]]


def parse_operations(raw: Any) -> list[WriteOp | DeleteOp | RenameOp]:
    """The batch's operations, validated; one 422 naming every bad one by index."""
    if not isinstance(raw, list) or not raw:
        raise invalid("operations", "a non-empty list of operations")
    if len(raw) > MAX_BATCH_OPERATIONS:
        raise invalid("operations", f"at most {MAX_BATCH_OPERATIONS} operations per batch")
    ops: list[WriteOp | DeleteOp | RenameOp] = []
    errors: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        field = f"operations[{i}]"
        kind = item.get("op") if isinstance(item, dict) else None
        model = OPS.get(kind) if isinstance(kind, str) else None
        if model is None:
            errors.append({"field": f"{field}.op", "message": "one of write, delete, rename"})
            continue
        try:
            ops.append(model.model_validate(item))  # type: ignore[arg-type]
        except ValidationError as exc:
            for e in exc.errors():
                loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
                message = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
                errors.append({"field": field + loc, "message": message})
    if errors:
        raise ValidationFailed(errors)
    for i, op in enumerate(ops):
        if isinstance(op, RenameOp):
            check_path(op.from_, f"operations[{i}].from")
            check_path(op.to, f"operations[{i}].to")
        else:
            check_path(op.path, f"operations[{i}].path")
    return ops


def _content(op: WriteOp | RawWrite, index: int) -> bytes:
    if isinstance(op, RawWrite):
        return op.data
    if op.encoding == "utf-8":
        return op.content.encode("utf-8")
    try:
        return base64.b64decode(op.content, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"operations[{index}].content", "not valid base64") from None


def _current(
    store: ObjectStore, root: str, changes: dict[str, trees.Entry | None], path: str
) -> trees.Entry | None:
    """The entry at ``path`` as the batch has left it so far."""
    if path in changes:
        return changes[path]
    return trees.lookup(store, root, path)


def _plan(
    store: ObjectStore,
    limits: Limits,
    root: str,
    ops: Sequence[Operation],
    new_blobs: list[Blob],
) -> Planned:
    changes: dict[str, trees.Entry | None] = {}
    results: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        if isinstance(op, WriteOp | RawWrite):
            data = _content(op, i)
            if len(data) > limits.file_bytes:
                raise PayloadTooLarge(
                    f"{op.path}: {len(data)} bytes; a file is at most {limits.file_bytes} bytes",
                    details={"limit": limits.file_bytes, "size": len(data)},
                )
            trees.check_parents(store, root, op.path)
            existing = _current(store, root, changes, op.path)
            if existing is not None and trees.kind(existing[0]) == "dir":
                raise Conflict(f"{op.path} is a directory; a file cannot replace it")
            blob = Blob.from_string(data)
            new_blobs.append(blob)
            mode = existing[0] if existing is not None else trees.FILE
            changes[op.path] = (mode, blob.id.decode())
            results.append({"path": op.path, "sha": blob.id.decode(), "size": len(data)})
        elif isinstance(op, DeleteOp):
            existing = _current(store, root, changes, op.path)
            if existing is None:
                raise file_not_found(op.path)
            if trees.kind(existing[0]) == "dir":
                raise Conflict(f"{op.path} is a directory; delete its files instead")
            changes[op.path] = None
            results.append({"path": op.path, "deleted": True})
        else:
            source = _current(store, root, changes, op.from_)
            if source is None:
                raise file_not_found(op.from_)
            if trees.kind(source[0]) == "dir":
                raise Conflict(f"{op.from_} is a directory; rename its files instead")
            trees.check_parents(store, root, op.to)
            if op.to != op.from_ and _current(store, root, changes, op.to) is not None:
                raise Conflict(f"{op.to} already exists; delete it first to replace it")
            changes[op.from_] = None
            changes[op.to] = source
            size = _blob_size(store, new_blobs, source[1])
            results.append({"path": op.from_, "deleted": True})
            results.append({"path": op.to, "sha": source[1], "size": size})
    return Planned(changes, results)


def _blob_size(store: ObjectStore, new_blobs: list[Blob], sha: str) -> int:
    for blob in new_blobs:
        if blob.id.decode() == sha:
            return len(blob.as_raw_string())
    return len(store.get(sha).as_raw_string())


def _content_at(store: ObjectStore, new_blobs: dict[str, Blob], entry: trees.Entry | None) -> bytes:
    if entry is None:
        return b""
    blob = new_blobs.get(entry[1])
    return (blob if blob is not None else store.get(entry[1])).as_raw_string()


def _lookup_or_none(store: ObjectStore, root: str, path: str) -> trees.Entry | None:
    try:
        return trees.lookup(store, root, path)
    except InvalidPath:  # a symlink on the way in that tree: nothing at this path there
        return None


def _new_figures(
    store: ObjectStore,
    ws: dict[str, Any],
    changes: dict[str, trees.Entry | None],
    new_blobs: dict[str, Blob],
) -> dict[str, int]:
    """The workspace figures after ``changes``, from the touched paths alone: each path
    counts as (changed?, additions, deletions) against the base, before and after."""
    files, added, removed = ws["filesChanged"], ws["linesAdded"], ws["linesRemoved"]
    for path, after in changes.items():
        base = _lookup_or_none(store, ws["base"], path)
        before = _lookup_or_none(store, ws["head"], path)
        for entry, sign in ((before, -1), (after, 1)):
            if entry == base:
                continue
            a, d = line_delta(
                _content_at(store, new_blobs, base), _content_at(store, new_blobs, entry)
            )
            files += sign
            added += sign * a
            removed += sign * d
    return figures.counts(files, added, removed)


def apply_operations(
    tx: Tx,
    limits: Limits,
    account_id: str,
    session_id: str,
    ops: Sequence[Operation],
    *,
    if_match_sha: str | None = None,
    if_none_match: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Apply ``ops`` atomically. ``if_match_sha`` / ``if_none_match`` guard a single-path
    write or delete (412 when the file is not as expected). Returns the per-operation
    results and the session's new ``workspace`` object."""
    row = kernel.load_for_write(tx, account_id, session_id)
    kernel.require_active(row)
    store = ObjectStore(tx, account_id)
    ws = dict(row["workspace"])
    root = ws["head"]
    if if_match_sha is not None or if_none_match:
        target = ops[0].from_ if isinstance(ops[0], RenameOp) else ops[0].path
        current = trees.lookup(store, root, target)
        if if_none_match and current is not None:
            raise PreconditionFailed(f"{target} exists (If-None-Match: *)")
        if if_match_sha is not None and (current is None or current[1] != if_match_sha):
            now = current[1] if current is not None else None
            raise PreconditionFailed(
                f"{target} is not at {if_match_sha} (now {now or 'absent'}); re-read and retry",
                details={"currentSha": now},
            )
    blobs: list[Blob] = []
    plan = _plan(store, limits, root, ops, blobs)
    ws = write_changes(tx, row, store, plan.changes, blobs)
    return plan.results, ws


def write_changes(
    tx: Tx,
    row: dict[str, Any],
    store: ObjectStore,
    changes: dict[str, trees.Entry | None],
    blobs: list[Blob],
    *,
    reason: str | None = None,
) -> dict[str, Any]:
    """Apply a change set to the session's working tree (``row``: locked, active): new
    objects, new head, change figures, ``files.changed``. Returns the new ``workspace``."""
    ws = dict(row["workspace"])
    root = ws["head"]
    store.add(blobs)
    by_sha = {b.id.decode(): b for b in blobs}
    counts = _new_figures(store, ws, changes, by_sha)
    new_root = trees.apply(store, root, changes)
    ws.update(head=new_root, **counts)
    if new_root != root or ws != row["workspace"]:
        kernel.write_fields(tx, row, {"workspace": ws, "last_activity_at": tx.now})
        data: dict[str, Any] = {"paths": sorted(changes), "workspace": ws}
        if reason is not None:
            data["reason"] = reason
        tx.emit(
            row["account_id"],
            "files.changed",
            data,
            session_id=row["id"],
            workspace_id=row["workspace_id"],
        )
    return ws
