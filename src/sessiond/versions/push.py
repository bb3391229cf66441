"""Pushing a session's last commit to its repository (``session.repo``).

``prepare`` reads what to send (in a read transaction: the history into a MemoryRepo),
the route pushes it (``files.remote.push``, network, no transaction), ``record`` writes
where it went. The default branch is the one pushed to last, else
``sessiond/<session id>`` (docs/design/git.md).
"""

from __future__ import annotations

from typing import Any

from dulwich.repo import MemoryRepo

from sessiond.db.executor import Tx
from sessiond.errors import Conflict
from sessiond.files import githttp
from sessiond.files.remote import Pushed
from sessiond.sessions import kernel


def default_branch(session_id: str, repo: dict[str, Any]) -> str:
    return str(repo.get("branch") or f"sessiond/{session_id}")


def prepare(tx: Tx, account_id: str, session_id: str) -> tuple[dict[str, Any], str, MemoryRepo]:
    """``(session.repo, the commit to push, a repository holding its history)``."""
    row = kernel.get_row(tx, account_id, session_id)
    kernel.require_active(row)
    repo = row["repo"]
    if not repo:
        raise Conflict("this session has no repository to push to (create it with source.git)")
    head = row["commit_head"]
    if head is None or head == repo.get("commit"):
        raise Conflict("nothing to push: no commit since the repository was fetched (commit)")
    return repo, str(head), githttp.load(tx, account_id, str(head), None)


def record(tx: Tx, account_id: str, session_id: str, pushed: Pushed) -> dict[str, Any]:
    """Remember the push on ``session.repo`` (``repo.pushed`` event); the push object."""
    row = kernel.load_for_write(tx, account_id, session_id)
    repo = dict(row["repo"] or {})
    repo.update(branch=pushed.branch, isNewBranch=pushed.created, pushedCommit=pushed.commit)
    kernel.write_fields(tx, row, {"repo": repo})
    out = {"branch": pushed.branch, "commit": pushed.commit, "remote": repo.get("url")}
    kernel.emit(tx, row, "repo.pushed", {**out, "isNewBranch": pushed.created})
    return out
