"""Git smart HTTP for a session: ``git clone|fetch|pull|push <server>/v1/sessions/{id}/git``.

Each request loads the session's history into an in-memory dulwich repository (one
read of the database, objects fetched in batches), runs dulwich's smart-HTTP WSGI app on
it through a2wsgi, with output coalesced into ~64 KiB writes. ``main`` is the working
tree: committed on the fly when it changed since the last commit. A push to ``main`` is
applied inside dulwich's ``update`` hook, in one database transaction: the new objects,
the working tree, the commit list, ``files.changed`` — or refused with a message the git
client prints (another ref, a deletion, a working tree that moved since the fetch, a
pushed tree that breaks the workspace path rules), with nothing written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from a2wsgi import WSGIMiddleware
from dulwich.errors import HookError
from dulwich.hooks import Hook
from dulwich.objects import Commit, ObjectID, ShaFile, Tree
from dulwich.refs import Ref
from dulwich.repo import MemoryRepo
from dulwich.server import DictBackend
from dulwich.web import make_wsgi_chain

from sessiond.db.executor import Database, Tx
from sessiond.errors import InvalidPath, SessionNotActive
from sessiond.files import commits, paths, trees
from sessiond.files.objects import ObjectStore
from sessiond.files.service import write_changes
from sessiond.sessions import kernel
from sessiond.sessions.figures import EMPTY_TREE

MAIN = Ref(b"refs/heads/main")
HEAD = Ref(b"HEAD")
ZERO = b"0" * 40
COALESCE = 64 * 1024


def _reachable(store: ObjectStore, head: str) -> dict[str, ShaFile]:
    """Every object reachable from commit ``head`` (history, trees, blobs)."""
    found: dict[str, ShaFile] = {}
    pending = [head]
    while pending:
        batch = [sha for sha in dict.fromkeys(pending) if sha not in found]
        pending = []
        for sha, obj in store.get_many(batch).items():
            found[sha] = obj
            if isinstance(obj, Commit):
                pending.append(obj.tree.decode())
                pending.extend(p.decode() for p in obj.parents)
            elif isinstance(obj, Tree):
                for entry in obj.iteritems():
                    if entry.mode & 0o170000 != 0o160000:  # not a submodule
                        pending.append(entry.sha.decode())
    return found


def prepare(tx: Tx, account_id: str, session_id: str) -> tuple[str, Commit | None]:
    """``main`` for this request: an active session's working tree is committed if it
    changed since the last commit; a read-only one gets an unsaved commit (returned, to
    live in the request's repository only)."""
    row = kernel.load_for_write(tx, account_id, session_id)
    ObjectStore(tx, account_id)  # holds off garbage collection until this commits
    if row["status"] == "active":
        return commits.ensure_commit(tx, row, "Working tree"), None
    since, tree = commits.since_last(tx, row)
    if row["commit_head"] is not None and since == tree:
        return str(row["commit_head"]), None
    parents = [row["commit_head"]] if row["commit_head"] else []
    unsaved = commits.build(tx, tree, parents, "Working tree", commits.DEFAULT_AUTHOR)
    return unsaved.id.decode(), unsaved


def load(tx: Tx, account_id: str, head: str, unsaved: Commit | None) -> MemoryRepo:
    """A repository holding everything reachable from ``head``, with ``main`` at it."""
    store = ObjectStore(tx, account_id)
    repo = MemoryRepo()
    if unsaved is None:
        roots = [head]
    else:
        roots = [*(p.decode() for p in unsaved.parents), unsaved.tree.decode()]
    for root in roots:
        for obj in _reachable(store, root).values():
            repo.object_store.add_object(obj)
    if unsaved is not None:
        repo.object_store.add_object(unsaved)
    repo.refs.set_symbolic_ref(HEAD, MAIN)
    repo.refs[MAIN] = ObjectID(head.encode())
    return repo


def apply_push(
    tx: Tx, account_id: str, session_id: str, repo: MemoryRepo, old: str, new: str
) -> None:
    """Make pushed commit ``new`` the working tree (the session must still be at ``old``,
    and the trees of ``new`` and of every pushed commit must follow the path rules)."""
    row = kernel.load_for_write(tx, account_id, session_id)
    if row["status"] != "active":
        raise HookError(f"session {session_id} is {row['status']} and accepts no pushes")
    if row["commit_head"] != old:
        raise HookError("main moved since you fetched (new commits); pull, then push again")
    store = ObjectStore(tx, account_id)
    commit = repo.object_store[ObjectID(new.encode())]
    if not isinstance(commit, Commit):
        raise HookError("main must point to a commit")
    known = set(_reachable(store, old)) if old else set()
    fresh = [repo.object_store[sha] for sha in repo.object_store if sha.decode() not in known]
    _check_trees(repo, [commit, *(obj for obj in fresh if isinstance(obj, Commit))])
    store.add(fresh)
    old_tree = commits.tree_of(store, old) if old else EMPTY_TREE
    if old_tree != row["workspace"]["head"]:
        raise HookError("the working tree changed since you fetched; pull, then push again")
    new_tree = commit.tree.decode()
    changes = {path: b for path, _a, b in trees.diff(store, old_tree, new_tree)}
    write_changes(tx, row, store, changes, [], reason="push")
    commits.record_pushed(tx, row, commit)


def _check_trees(repo: MemoryRepo, pushed: list[Commit]) -> None:
    """Refuse the push (``HookError``, printed by git) if the tree of any pushed commit
    breaks the workspace path rules anywhere (``paths.check_tree``)."""
    try:
        paths.check_tree(
            lambda sha: repo.object_store[ObjectID(sha.encode())],
            *dict.fromkeys(c.tree.decode() for c in pushed),
            has=lambda sha: ObjectID(sha.encode()) in repo.object_store,
        )
    except InvalidPath as exc:
        raise HookError(f"refused: {exc.message}") from None


class UpdateHook(Hook):
    """dulwich's ``update`` hook: only ``main``, and the push lands in the database here."""

    def __init__(self, db: Database, account_id: str, session_id: str, repo: MemoryRepo) -> None:
        self.db, self.account_id, self.session_id, self.repo = db, account_id, session_id, repo

    def execute(self, *args: Any) -> tuple[None, None]:
        ref, old, new = args
        if ref != MAIN:
            raise HookError(
                f"only main can be pushed here (main is the session's working tree); "
                f"{ref.decode()} refused"
            )
        if new == ZERO:
            raise HookError("main cannot be deleted")
        try:
            self.db.write_sync(
                apply_push,
                self.account_id,
                self.session_id,
                self.repo,
                "" if old == ZERO else old.decode(),
                new.decode(),
            )
        except SessionNotActive as exc:
            raise HookError(exc.message) from None
        return None, None


def _coalesce(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Gather the many small writes of dulwich's WSGI app into ~64 KiB chunks."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        buffer = bytearray()
        sink: list[Callable[[bytes], Any]] = []

        def write(data: bytes) -> None:
            buffer.extend(data)
            if len(buffer) >= COALESCE:
                sink[0](bytes(buffer))
                buffer.clear()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            sink.append(start_response(status, headers, exc_info))
            return write

        result = app(environ, start)
        try:
            for chunk in result:
                write(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return [bytes(buffer)] if buffer else []

    return wrapped


def wsgi_app(repo: MemoryRepo) -> WSGIMiddleware:
    backend = DictBackend({"/": repo})  # type: ignore[arg-type]
    return WSGIMiddleware(_coalesce(make_wsgi_chain(backend)), workers=4)


def attach_hook(db: Database, account_id: str, session_id: str, repo: MemoryRepo) -> None:
    repo.hooks["update"] = UpdateHook(db, account_id, session_id, repo)
