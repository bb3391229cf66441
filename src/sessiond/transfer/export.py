"""Export: one session, read in one transaction, written as one archive file.

``build`` reads every row of the session (``rows.py`` says which columns), walks the git
objects reachable from its roots, and writes the archive into a spooled temporary file
that the caller streams and closes. On PostgreSQL the transaction is ``REPEATABLE READ``:
every table is read at the same moment, as SQLite's single snapshot does anyway.
"""

from __future__ import annotations

import functools
import importlib.metadata
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import sqlalchemy as sa
from dulwich.objects import Commit, Tree

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.events.store import render_event
from sessiond.files.objects import MissingObject, ObjectStore
from sessiond.ids import iso
from sessiond.sessions import kernel
from sessiond.sessions.figures import EMPTY_TREE
from sessiond.transfer import archive, pack, rows
from sessiond.transfer.rows import Spec

BATCH = 500
g = t.git_objects


@functools.cache
def server_name() -> str:
    """``sessiond <version>``, as the manifest's ``exportedBy.server`` says."""
    try:
        return f"sessiond {importlib.metadata.version('sessiond')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree
        return "sessiond"


# How each session-owned table is read: its rows of the session, in a stable order.
_ORDER: dict[str, tuple[str, ...]] = {
    "checkpoints": ("id",),
    "commits": ("created_at", "sha"),
    "tasks": ("position", "id"),
    "notes": ("id",),
    "annotations": ("id",),
    "approvals": ("id",),
    "cacheEntries": ("key",),
    "turns": ("seq",),
    "memories": ("num",),
}


def _owned(tx: Tx, spec: Spec, account_id: str, session_id: str) -> list[dict[str, Any]]:
    table = spec.table
    q = (
        sa.select(table)
        .where(table.c.account_id == account_id, table.c.session_id == session_id)
        .order_by(*(table.c[name] for name in _ORDER[spec.key]))
    )
    return [rows.export_row(spec, r._mapping) for r in tx.conn.execute(q)]


def _messages(tx: Tx, account_id: str, branches: list[str]) -> list[dict[str, Any]]:
    m = t.messages
    out: list[dict[str, Any]] = []
    for i in range(0, len(branches), BATCH):
        q = (
            sa.select(m)
            .where(m.c.account_id == account_id, m.c.branch_id.in_(branches[i : i + BATCH]))
            .order_by(m.c.branch_id, m.c.bseq)
        )
        out.extend(rows.export_row(rows.MESSAGES, r._mapping) for r in tx.conn.execute(q))
    return out


def manifest_of(tx: Tx, row: dict[str, Any], *, server: str) -> dict[str, Any]:
    """Everything of the session but its git objects and events (``objects`` and
    ``events`` are filled by ``build``)."""
    account_id, session_id = row["account_id"], row["id"]
    refs = t.conversation_refs
    branches = list(
        tx.conn.execute(
            sa.select(refs.c.branch_id)
            .where(refs.c.session_id == session_id)
            .order_by(refs.c.branch_id)
        ).scalars()
    )
    out: dict[str, Any] = {
        "format": archive.FORMAT,
        "version": archive.VERSION,
        "exportedAt": iso(tx.now),
        "exportedBy": {"server": server},
        "session": rows.export_row(rows.SESSION, row),
        "branches": branches,
        "messages": _messages(tx, account_id, branches),
    }
    for spec in rows.OWNED:
        out[spec.key] = _owned(tx, spec, account_id, session_id)
    return out


def roots(manifest: dict[str, Any]) -> tuple[set[str], set[str]]:
    """``(tree roots, commit roots)`` of a manifest: the working tree and base, every
    checkpoint's tree and base, every listed commit and the branch tip (as gc marks)."""
    session = manifest["session"]
    tree_roots = {session["workspace"]["head"], session["workspace"]["base"]}
    for cp in manifest["checkpoints"]:
        tree_roots.update((cp["tree"], cp["base"]))
    commit_roots = {c["sha"] for c in manifest["commits"]}
    if session["commit_head"]:
        commit_roots.add(session["commit_head"])
    return tree_roots, commit_roots


def reachable(store: ObjectStore, trees: set[str], commits: set[str]) -> list[str]:
    """Every object reachable from the roots, sorted by sha (blobs are named by the trees
    that hold them, never read). The empty tree may be absent: it needs no object."""
    live: set[str] = set()
    frontier = sorted(commits)
    while frontier:
        found = store.get_many(frontier)
        parents: set[str] = set()
        for sha in frontier:
            obj = found.get(sha)
            if not isinstance(obj, Commit):
                raise MissingObject(sha)
            live.add(sha)
            trees.add(obj.tree.decode())
            parents.update(p.decode() for p in obj.parents)
        frontier = sorted(parents - live)
    frontier = sorted(trees - live)
    while frontier:
        found = store.get_many(frontier)
        subtrees: set[str] = set()
        for sha in frontier:
            obj = found.get(sha)
            if obj is None and sha == EMPTY_TREE:
                continue
            if not isinstance(obj, Tree):
                raise MissingObject(sha)
            live.add(sha)
            for entry in obj.iteritems():
                child = entry.sha.decode()
                if stat.S_ISDIR(entry.mode):
                    subtrees.add(child)
                elif entry.mode & 0o170000 == 0o160000:
                    continue  # a submodule's commit: not in this store
                else:
                    live.add(child)
        frontier = sorted(subtrees - live)
    return sorted(live)


def _sizes(tx: Tx, account_id: str, shas: list[str]) -> list[tuple[int, int, int]]:
    """``(type, size, stored bytes)`` of each object, in ``shas`` order."""
    found: dict[str, tuple[int, int, int]] = {}
    for i in range(0, len(shas), BATCH):
        q = sa.select(g.c.sha, g.c.type, g.c.size, sa.func.length(g.c.data)).where(
            g.c.account_id == account_id, g.c.sha.in_(shas[i : i + BATCH])
        )
        for sha, kind, size, stored in tx.conn.execute(q):
            found[sha] = (kind, size, stored)
    missing = [sha for sha in shas if sha not in found]
    if missing:
        raise MissingObject(missing[0])
    return [found[sha] for sha in shas]


def _entries(tx: Tx, account_id: str, shas: list[str]) -> Iterator[tuple[int, int, bytes]]:
    """The pack entries ``(type, size, zlib data)`` in ``shas`` order, 500 a query."""
    for i in range(0, len(shas), BATCH):
        chunk = shas[i : i + BATCH]
        q = sa.select(g.c.sha, g.c.type, g.c.size, g.c.data).where(
            g.c.account_id == account_id, g.c.sha.in_(chunk)
        )
        got = {r.sha: (r.type, r.size, bytes(r.data)) for r in tx.conn.execute(q)}
        for sha in chunk:
            yield got[sha]


def _events(
    tx: Tx, account_id: str, session_id: str, spool_bytes: int
) -> tuple[IO[bytes], int, int]:
    """The session's events as JSON lines in a spooled file (at its start), its size and
    the number of events."""
    e = t.events
    out = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 (closed by build)
    after = count = 0
    while True:
        batch = tx.conn.execute(
            sa.select(e)
            .where(e.c.account_id == account_id, e.c.session_id == session_id, e.c.id > after)
            .order_by(e.c.id)
            .limit(BATCH)
        ).all()
        for r in batch:
            out.write(archive.dumps(render_event(dict(r._mapping))) + b"\n")
        count += len(batch)
        if len(batch) < BATCH:
            break
        after = batch[-1].id
    size = out.tell()
    out.seek(0)
    return out, size, count


def build(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    events: bool,
    spool_bytes: int,
) -> IO[bytes]:
    """The archive of the session (404 if the account has none), in a spooled temporary
    file positioned at its start; the caller reads and closes it."""
    if tx.is_postgres:  # must be the transaction's first statement
        tx.conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    row = kernel.get_row(tx, account_id, session_id)
    manifest = manifest_of(tx, row, server=server_name())
    store = ObjectStore(tx, account_id)
    shas = reachable(store, *roots(manifest))
    sizes = _sizes(tx, account_id, shas)
    manifest["objects"] = shas
    log = _events(tx, account_id, session_id, spool_bytes) if events else None
    manifest["events"] = None if log is None else log[2]
    out = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 (the caller closes it)
    try:
        archive.write(
            out,
            manifest,
            pack.pack_size(sizes),
            pack.write_pack(len(shas), _entries(tx, account_id, shas)),
            mtime=tx.now // 1000,
            events=None if log is None else log[0],
            events_size=0 if log is None else log[1],
        )
    except BaseException:
        out.close()
        raise
    finally:
        if log is not None:
            log[0].close()
    out.seek(0)
    return out
