"""Garbage collection of git objects nothing refers to (mark and sweep, per account).

Roots: every session's working tree and base, every checkpoint's tree, every commit a
session lists, and every session's last commit (commits bring their trees and parents).

Safety against concurrent writers: a write that touches the object store holds a
*shared* transaction lock (``ObjectStore.guard``); collection holds it *exclusively* for
its whole transaction. So collection never overlaps a transaction that is about to
reference an object: it waits for those to commit (and then sees their references), and
writers that start later wait for it (and re-insert anything they need). On SQLite the
single writer thread serializes the two anyway.

Each account is collected in a transaction of its own (``collect_all``): the exclusive
lock, and on SQLite the only writer, is held for one account's mark and sweep at a time,
so writers get their turn between accounts.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

import sqlalchemy as sa
from dulwich.objects import Commit, Tree

from sessiond.db import tables as t
from sessiond.db.executor import Database, Tx
from sessiond.files.objects import GC_LOCK_KEY, ObjectStore
from sessiond.sessions import kernel
from sessiond.sessions.figures import EMPTY_TREE

g = t.git_objects


@dataclass
class Result:
    accounts: int = 0
    marked: int = 0
    deleted: int = 0


def _roots(tx: Tx, account_id: str) -> tuple[set[str], set[str]]:
    """``(tree roots, commit roots)`` of one account."""
    tree_roots: set[str] = set()
    commit_roots: set[str] = set()
    s = t.sessions
    for ws, head in tx.conn.execute(
        sa.select(s.c.workspace, s.c.commit_head).where(
            s.c.account_id == account_id, s.c.deleted_at.is_(None)
        )
    ):
        tree_roots.update((ws["head"], ws["base"]))
        if head:
            commit_roots.add(head)
    tree_roots.update(
        tx.conn.execute(
            sa.select(t.checkpoints.c.tree).where(
                t.checkpoints.c.account_id == account_id,
                kernel.shown(t.checkpoints.c.session_id, account_id),
            )
        ).scalars()
    )
    commit_roots.update(
        tx.conn.execute(
            sa.select(t.commits.c.sha).where(
                t.commits.c.account_id == account_id,
                kernel.shown(t.commits.c.session_id, account_id),
            )
        ).scalars()
    )
    return tree_roots, commit_roots


def _mark(store: ObjectStore, trees_: set[str], commits: set[str]) -> set[str]:
    live: set[str] = set()
    pending_commits = list(commits)
    while pending_commits:
        sha = pending_commits.pop()
        if sha in live or not store.contains(sha):
            continue
        live.add(sha)
        obj = store.get(sha)
        if isinstance(obj, Commit):
            trees_.add(obj.tree.decode())
            pending_commits.extend(p.decode() for p in obj.parents)
    pending = [sha for sha in trees_ if sha != EMPTY_TREE]
    while pending:
        sha = pending.pop()
        if sha in live or not store.contains(sha):
            continue
        live.add(sha)
        obj = store.get(sha)
        if isinstance(obj, Tree):
            for entry in obj.iteritems():
                child = entry.sha.decode()
                if stat.S_ISDIR(entry.mode):
                    if child not in live:
                        pending.append(child)
                elif not stat.S_ISLNK(entry.mode) and entry.mode & 0o170000 == 0o160000:
                    continue  # a submodule commit: not ours to keep
                else:
                    live.add(child)  # blobs need no reading
    return live


def _sweep(tx: Tx, account_id: str, result: Result, batch: int) -> None:
    store = ObjectStore(tx, account_id)
    live = _mark(store, *_roots(tx, account_id))
    result.marked += len(live)
    stored = tx.conn.execute(sa.select(g.c.sha).where(g.c.account_id == account_id)).scalars()
    dead = [sha for sha in stored if sha not in live]
    for i in range(0, len(dead), batch):
        chunk = dead[i : i + batch]
        tx.conn.execute(g.delete().where(g.c.account_id == account_id, g.c.sha.in_(chunk)))
    result.deleted += len(dead)
    result.accounts += 1


def collect(tx: Tx, account_id: str, *, batch: int) -> Result:
    """Delete every unreachable object of one account (``batch`` per statement). One
    transaction, exclusive of every writer that uses the object store."""
    if tx.is_postgres:
        tx.conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": GC_LOCK_KEY})
    result = Result()
    _sweep(tx, account_id, result, batch)
    return result


def accounts_with_objects(tx: Tx) -> list[str]:
    return list(tx.conn.execute(sa.select(g.c.account_id).distinct()).scalars())


def collect_all(db: Database, *, batch: int) -> Result:
    """Collect every account, one transaction each (blocking: run it off the event loop)."""
    total = Result()
    for account_id in db.read_sync(accounts_with_objects):
        one = db.write_sync(collect, account_id, batch=batch)
        total.accounts += one.accounts
        total.marked += one.marked
        total.deleted += one.deleted
    return total
