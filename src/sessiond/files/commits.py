"""Commits on a session's branch, and the deterministic commit summary.

A commit is a real git commit object (tree = the working tree, parent = the session's
last commit) stored with the other objects; ``commits`` lists them per session.
"""

from __future__ import annotations

import os.path
from typing import Any

import sqlalchemy as sa
from dulwich.objects import Commit, ObjectID

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import Conflict, invalid
from sessiond.files.diff import compute
from sessiond.files.objects import ObjectStore
from sessiond.ids import iso
from sessiond.models import ApiModel
from sessiond.pagination import keyset
from sessiond.sessions import kernel

c = t.commits
DEFAULT_AUTHOR = {"name": "sessiond", "email": "sessiond@localhost"}
MESSAGE_CHARS = 100_000
BODY_FILES = 50


class Author(ApiModel):
    name: str
    email: str


def since_last(tx: Tx, row: dict[str, Any]) -> tuple[str, str]:
    """``(tree of the last commit, or the base; the working tree)``."""
    ws = row["workspace"]
    if row["commit_head"] is None:
        return ws["base"], ws["head"]
    # (read from the object: a fork's last commit may be its parent's)
    head_commit = ObjectStore(tx, row["account_id"]).get(row["commit_head"])
    assert isinstance(head_commit, Commit)
    return head_commit.tree.decode(), ws["head"]


def summarize(tx: Tx, account_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """A title naming the main change and a body listing the files with +/-."""
    a, b = since_last(tx, row)
    result = compute(tx, account_id, a, b)
    files = result["files"]
    if not files:
        title = "No changes"
    else:
        main = max(files, key=lambda f: (f["additions"] + f["deletions"], f["path"]))
        verb = {"added": "Add", "deleted": "Delete", "renamed": "Rename", "modified": "Update"}
        what = verb[main["status"]]
        name = (
            f"{main['oldPath']} to {main['path']}" if main["status"] == "renamed" else main["path"]
        )
        title = f"{what} {name}"
        if len(files) > 1:
            others = len(files) - 1
            common = os.path.commonpath([f["path"] for f in files]) if len(files) > 1 else ""
            where = f" in {common}/" if common else ""
            title += f" and {others} other file{'s' if others != 1 else ''}{where}"
    letter = {"added": "A", "deleted": "D", "renamed": "R", "modified": "M"}
    lines = []
    for f in files[:BODY_FILES]:
        name = f"{f['oldPath']} -> {f['path']}" if f["status"] == "renamed" else f["path"]
        stat = "binary" if f["binary"] else f"+{f['additions']} -{f['deletions']}"
        lines.append(f"{letter[f['status']]} {name} ({stat})")
    if len(files) > BODY_FILES:
        lines.append(f"... and {len(files) - BODY_FILES} more files")
    summary = result["summary"]
    return {
        "summary": {"title": title, "body": "\n".join(lines)},
        "files": summary["files"],
        "additions": summary["additions"],
        "deletions": summary["deletions"],
    }


def generate_summary(tx: Tx, account_id: str, session_id: str) -> dict[str, Any]:
    return summarize(tx, account_id, kernel.get_row(tx, account_id, session_id))


def render(row: Any, parents: list[str], author: dict[str, str]) -> dict[str, Any]:
    return {
        "id": row["sha"],
        "message": row["message"],
        "tree": row["tree"],
        "parents": parents,
        "author": author,
        "createdAt": iso(row["created_at"]),
    }


def _render_stored(store: ObjectStore, row: Any) -> dict[str, Any]:
    obj = store.get(row["sha"])
    assert isinstance(obj, Commit)
    name, _, email = obj.author.decode("utf-8", "replace").partition(" <")
    return render(
        row,
        [p.decode() for p in obj.parents],
        {"name": name, "email": email.rstrip(">")},
    )


def create(
    tx: Tx,
    account_id: str,
    session_id: str,
    *,
    message: str | None,
    author: Author | None,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """Commit the working tree on the session's branch (409 when nothing changed)."""
    if message is not None and not message.strip():
        raise invalid("message", "must not be empty (omit it to have one generated)")
    if message is not None and len(message) > MESSAGE_CHARS:
        raise invalid("message", f"at most {MESSAGE_CHARS} characters")
    row = kernel.load_for_write(tx, account_id, session_id, if_match=if_match)
    kernel.require_active(row)
    since, head = since_last(tx, row)
    if row["commit_head"] is not None and since == head:
        raise Conflict("nothing to commit: the working tree is as the last commit left it")
    if message is None:
        generated = summarize(tx, account_id, row)["summary"]
        message = generated["title"] + ("\n\n" + generated["body"] if generated["body"] else "")
    who = author.model_dump() if author is not None else dict(DEFAULT_AUTHOR)
    parents = [row["commit_head"]] if row["commit_head"] else []
    return make(tx, row, head, parents, message, who)


def tree_of(store: ObjectStore, commit_sha: str) -> str:
    obj = store.get(commit_sha)
    assert isinstance(obj, Commit)
    return str(obj.tree.decode())


def build(tx: Tx, tree: str, parents: list[str], message: str, who: dict[str, str]) -> Commit:
    """A commit object (not stored)."""
    identity = f"{who['name']} <{who['email']}>".encode()
    commit = Commit()
    commit.tree = ObjectID(tree.encode())
    commit.parents = [ObjectID(p.encode()) for p in parents]
    commit.author = commit.committer = identity
    commit.author_time = commit.commit_time = tx.now // 1000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = (message if message.endswith("\n") else message + "\n").encode()
    return commit


def record_pushed(tx: Tx, row: dict[str, Any], commit: Commit) -> None:
    """A pushed commit becomes the session's last commit (its objects are stored)."""
    sha = commit.id.decode()
    message = commit.message.decode("utf-8", "replace").rstrip("\n")
    values = {
        "session_id": row["id"],
        "sha": sha,
        "account_id": row["account_id"],
        "tree": commit.tree.decode(),
        "message": message,
        "created_at": tx.now,
    }
    tx.conn.execute(c.insert(), values)
    kernel.write_fields(tx, row, {"commit_head": sha})
    name, _, email = commit.author.decode("utf-8", "replace").partition(" <")
    out = render(
        values, [p.decode() for p in commit.parents], {"name": name, "email": email.rstrip(">")}
    )
    tx.emit(
        row["account_id"],
        "commit.created",
        {"commit": out, "pushed": True},
        session_id=row["id"],
        workspace_id=row["workspace_id"],
    )


def make(
    tx: Tx,
    row: dict[str, Any],
    tree: str,
    parents: list[str],
    message: str,
    who: dict[str, str],
) -> dict[str, Any]:
    """Store a commit of ``tree`` on the session's branch and move ``commit_head`` to it."""
    commit = build(tx, tree, parents, message, who)
    ObjectStore(tx, row["account_id"]).add([commit])
    values = {
        "session_id": row["id"],
        "sha": commit.id.decode(),
        "account_id": row["account_id"],
        "tree": tree,
        "message": message,
        "created_at": tx.now,
    }
    tx.conn.execute(c.insert(), values)
    kernel.write_fields(tx, row, {"commit_head": values["sha"]})
    out = render(values, parents, who)
    tx.emit(
        row["account_id"],
        "commit.created",
        {"commit": out},
        session_id=row["id"],
        workspace_id=row["workspace_id"],
    )
    return out


def ensure_commit(tx: Tx, row: dict[str, Any], message: str) -> str:
    """The session's last commit, after committing its working tree if it differs."""
    since, head = since_last(tx, row)
    if row["commit_head"] is not None and since == head:
        return str(row["commit_head"])
    parents = [row["commit_head"]] if row["commit_head"] else []
    return str(make(tx, row, head, parents, message, dict(DEFAULT_AUTHOR))["id"])


def list_page(
    tx: Tx, account_id: str, session_id: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The session's commits, newest first."""
    kernel.require_exists(tx, account_id, session_id)
    q = sa.select(c).where(c.c.session_id == session_id, c.c.account_id == account_id)
    key = (c.c.created_at, c.c.sha)
    rows, next_cursor = keyset(tx, q, key, "commits", limit=limit, cursor=cursor, descending=True)
    store = ObjectStore(tx, account_id)
    return [_render_stored(store, r) for r in rows], next_cursor
