"""Session sources: the files a new session starts from (``source`` on create).

``{"sessionId", "checkpointId"?}`` starts from another session's working tree (or one of
its checkpoints) — O(1), the objects are shared; ``{"files": {"path": "text", ...}}``
seeds files inline. Either way the starting tree is also the session's ``base``.
``{"git": {"url", "ref"?}}`` starts from a commit of a remote repository: the route
fetches it first (``files.remote.fetch``, outside any transaction) and ``apply`` stores
its history and makes its tree the base and the commit the session's last commit
(docs/design/git.md).
"""

from __future__ import annotations

from typing import Any

from dulwich.objects import Blob, ObjectID

from sessiond.db.executor import Tx
from sessiond.errors import ValidationFailed, invalid
from sessiond.files import diff, paths, remote, trees
from sessiond.files.objects import ObjectStore
from sessiond.files.paths import check_path
from sessiond.sessions import kernel
from sessiond.sessions.figures import EMPTY_TREE
from sessiond.settings import Limits

MAX_INLINE_FILES = 10_000


def check(source: dict[str, Any] | None) -> None:
    """Validate the shape before anything is written."""
    if source is None:
        return
    keys = set(source)
    if "git" in keys:
        if keys != {"git"}:
            raise invalid("source", "give git alone")
        git = source["git"]
        if not isinstance(git, dict) or not isinstance(git.get("url"), str):
            raise invalid("source.git", 'an object {"url", "ref"?}')
        unknown = set(git) - {"url", "ref"}
        if unknown:
            raise invalid(f"source.git.{sorted(unknown)[0]}", "unknown field")
        ref = git.get("ref")
        if ref is not None and (not isinstance(ref, str) or not ref or len(ref) > 256):
            raise invalid("source.git.ref", "a branch, tag or commit of at most 256 characters")
        return
    if "files" in keys:
        if keys != {"files"}:
            raise invalid("source", "give files alone")
        files = source["files"]
        if not isinstance(files, dict):
            raise invalid("source.files", "an object of path → text content")
        if len(files) > MAX_INLINE_FILES:
            raise invalid("source.files", f"at most {MAX_INLINE_FILES} files")
        errors = []
        for path, content in files.items():
            check_path(path, f"source.files.{path}")
            if not isinstance(content, str):
                errors.append({"field": f"source.files.{path}", "message": "must be text"})
        if errors:
            raise ValidationFailed(errors)
        return
    if "sessionId" in keys or "session_id" in keys:
        allowed = {"sessionId", "session_id", "checkpointId", "checkpoint_id"}
        unknown = keys - allowed
        if unknown:
            raise invalid(f"source.{sorted(unknown)[0]}", "unknown field (check the spelling)")
        for key in keys:
            if not isinstance(source[key], str) or not source[key]:
                raise invalid(f"source.{key}", "must be an id (a non-empty string)")
        if "sessionId" in keys and "session_id" in keys:
            raise invalid("source.session_id", "give sessionId once")
        return
    raise invalid("source", 'one of {"sessionId", "checkpointId"?} or {"files": {...}}')


def apply(
    tx: Tx,
    limits: Limits,
    account_id: str,
    row: dict[str, Any],
    source: dict[str, Any],
    fetched: remote.Fetched | None = None,
) -> None:
    """Give the new session ``row`` its starting tree (as head and base). A git source
    needs ``fetched`` (what the route fetched)."""
    if "git" in source:
        assert fetched is not None
        _apply_git(tx, account_id, row, fetched)
        return
    if "files" in source:
        store = ObjectStore(tx, account_id)
        blobs = []
        changes: dict[str, trees.Entry | None] = {}
        for path, content in source["files"].items():
            data = content.encode("utf-8")
            if len(data) > limits.file_bytes:
                raise invalid(f"source.files.{path}", f"at most {limits.file_bytes} bytes")
            blob = Blob.from_string(data)
            blobs.append(blob)
            changes[path] = (trees.FILE, blob.id.decode())
        store.add(blobs)
        tree = trees.apply(store, EMPTY_TREE, changes)
    else:
        ObjectStore(tx, account_id)  # holds off garbage collection until this commits
        source_id = str(source.get("sessionId", source.get("session_id")))
        checkpoint_id: str | None = source.get("checkpointId", source.get("checkpoint_id"))
        origin = kernel.get_row(tx, account_id, source_id)
        if checkpoint_id is not None:
            tree = diff.checkpoint_tree(tx, account_id, source_id, checkpoint_id)
        else:
            tree = origin["workspace"]["head"]
    ws = dict(row["workspace"], head=tree, base=tree)
    kernel.write_fields(tx, row, {"workspace": ws})
    tx.emit(
        account_id,
        "files.changed",
        {"paths": sorted(source.get("files", {})), "workspace": ws, "reason": "source"},
        session_id=row["id"],
        workspace_id=row["workspace_id"],
    )


def check_fetched(fetched: remote.Fetched) -> None:
    """Refuse (422 ``invalid_path``) a fetched tree that breaks the path rules anywhere:
    a ``.git`` entry, ``..``, a symlink that leaves the tree, a submodule."""
    objects = fetched.repo.object_store
    paths.check_tree(
        lambda sha: objects[ObjectID(sha.encode())],
        fetched.commit.tree.decode(),
        has=lambda sha: ObjectID(sha.encode()) in objects,
    )


def _apply_git(tx: Tx, account_id: str, row: dict[str, Any], fetched: remote.Fetched) -> None:
    store = ObjectStore(tx, account_id)
    objects = fetched.repo.object_store
    store.add(objects[sha] for sha in objects)
    tree = fetched.commit.tree.decode()
    commit = fetched.commit.id.decode()
    repo = {
        "url": fetched.url,
        "ref": fetched.ref,
        "commit": commit,
        "branch": None,
        "isNewBranch": False,
        "upstreamBranch": fetched.branch,
    }
    ws = dict(row["workspace"], head=tree, base=tree)
    kernel.write_fields(tx, row, {"workspace": ws, "repo": repo, "commit_head": commit})
    tx.emit(
        account_id,
        "files.changed",
        {"paths": [], "workspace": ws, "reason": "source"},
        session_id=row["id"],
        workspace_id=row["workspace_id"],
    )
