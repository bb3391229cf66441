"""Import: an archive file becomes a new session, all or nothing.

``prepare`` reads and checks the whole file without touching the database (structure,
manifest, pack, references: docs/design/export.md § Import, in that order) and keeps
what ``apply`` needs; ``apply`` writes everything in the caller's one transaction with
new ids (``remap.Ids``) and emits ``session.created``. A file ``prepare`` accepted never
fails in ``apply`` for a reason of its own content; a file it refused wrote nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sessiond.conversation import path as P
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.files.objects import ObjectStore
from sessiond.ids import new_id
from sessiond.memory import service as memories
from sessiond.sessions import kernel
from sessiond.sessions.render import render_session, session_doc
from sessiond.sessions.service import EMPTY_SANDBOX
from sessiond.settings import Settings
from sessiond.transfer import archive, checks, pack, rows
from sessiond.transfer.checks import bad, missing
from sessiond.transfer.errors import InvalidArchive
from sessiond.transfer.remap import Ids
from sessiond.workspaces import service as workspaces

BATCH = 500
# The objects of an archive may inflate to at most this many times the archive limit.
EXPANSION = 16
TOP = frozenset(
    {"format", "version", "exportedAt", "exportedBy", "session", "branches", "messages"}
    | {spec.key for spec in rows.OWNED}
    | {"objects", "events"}
)
ENDED = ("completed", "cancelled", "failed")


@dataclass(frozen=True)
class Limits:
    """``archive``: the file (and each member but the manifest); ``manifest``: the
    manifest member; ``object``: one git object, inflated."""

    archive: int
    manifest: int
    object: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """``import_max_bytes``, ``import_manifest_bytes``, ``limits.file_bytes``."""
        s = settings
        return cls(s.import_max_bytes, s.import_manifest_bytes, s.limits.file_bytes)


@dataclass
class Prepared:
    """A checked archive, ready to be written (``close`` it when done)."""

    manifest: dict[str, Any]
    opened: archive.Opened
    scanned: pack.Scanned

    @property
    def session(self) -> dict[str, Any]:
        return self.manifest["session"]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.opened.close()


def prepare(f: IO[bytes], limits: Limits) -> Prepared:
    """Read and check the archive in ``f``; ``InvalidArchive`` (422) at the first problem."""
    opened = archive.read(f, manifest_limit=limits.manifest, member_limit=limits.archive)
    try:
        m = opened.manifest
        if m.keys() != TOP:
            unknown, absent = sorted(m.keys() - TOP), sorted(TOP - m.keys())
            raise bad("manifest", f"unknown fields {unknown}, missing fields {absent}")
        rows.check_row(rows.SESSION, m["session"], "session")
        rows.check_rows(rows.MESSAGES, m["messages"])
        for spec in rows.OWNED:
            rows.check_rows(spec, m[spec.key])
        objects = checks.shas(m["objects"], "objects")
        checks.unique(objects, "objects")
        scanned = pack.scan(
            opened.pack,
            objects,
            object_limit=limits.object,
            total_limit=EXPANSION * limits.archive,
        )
        _references(m, checks.Objects(scanned, opened.pack))
        return Prepared(m, opened, scanned)
    except BaseException:
        opened.close()
        raise


# -- checks between rows -----------------------------------------------------------------------


def _dict(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise bad(field, "must be an object")


def _checkpoint_tasks(value: Any, field: str) -> None:
    if not isinstance(value, list):
        raise bad(field, "must be a list")
    for i, task in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(task, dict) or task.keys() != {"id", "content", "status", "priority"}:
            raise bad(where, "must be {id, content, status, priority}")
        for name in ("id", "content", "status", "priority"):
            reason = rows.type_error(t.tasks.c[name], task[name])
            if reason is not None or task[name] is None:
                raise bad(f"{where}.{name}", reason or "must not be null")


def _references(m: dict[str, Any], objects: checks.Objects) -> None:
    session = m["session"]
    sid = session["id"]
    checks.exported_at(m["exportedAt"])
    checks.tags(session["tags"])
    checks.workspace(session["workspace"], "session.workspace")
    for name in ("metadata", "context"):
        _dict(session[name], f"session.{name}")
    conversation = checks.Conversation(m["branches"], m["messages"])
    conversation.check_path(session["conversation"], "session.conversation", live=True)
    for spec in rows.OWNED:
        for i, row in enumerate(m[spec.key]):
            if row["session_id"] != sid:
                raise bad(f"{spec.key}[{i}].session_id", "must be the session's id")
    for key, name in (
        ("checkpoints", "id"),
        ("commits", "sha"),
        ("tasks", "id"),
        ("notes", "id"),
        ("annotations", "id"),
        ("approvals", "id"),
        ("cacheEntries", "key"),
        ("turns", "id"),
        ("turns", "seq"),
        ("memories", "id"),
    ):
        checks.unique((row[name] for row in m[key]), f"{key}[].{name}")
    checkpoint_ids = {cp["id"] for cp in m["checkpoints"]}
    tree_roots = {
        session["workspace"]["head"]: "session.workspace.head",
        session["workspace"]["base"]: "session.workspace.base",
    }
    for i, cp in enumerate(m["checkpoints"]):
        where = f"checkpoints[{i}]"
        conversation.check_path(cp["conversation"], f"{where}.conversation")
        conversation.check_message(cp["message_id"], f"{where}.message_id")
        conversation.check_message(cp["before_message_id"], f"{where}.before_message_id")
        _checkpoint_tasks(cp["tasks"], f"{where}.tasks")
        _dict(cp["context"], f"{where}.context")
        checks.workspace({"head": cp["tree"], "base": cp["base"], **cp["figures"]}, where)
        tree_roots.setdefault(cp["tree"], f"{where}.tree")
        tree_roots.setdefault(cp["base"], f"{where}.base")
    if session["revert_undo"] is not None and session["revert_undo"] not in checkpoint_ids:
        raise missing("session.revert_undo", "is not one of the checkpoints")
    for i, ann in enumerate(m["annotations"]):
        target = ann["target"]
        _dict(target, f"annotations[{i}].target")
        if "messageId" in target:
            conversation.check_message(target["messageId"], f"annotations[{i}].target.messageId")
            if target["messageId"] is None:
                raise bad(f"annotations[{i}].target.messageId", "must not be null")
        cp_id = target.get("checkpointId")
        if cp_id is not None and cp_id not in checkpoint_ids:
            raise missing(f"annotations[{i}].target.checkpointId", "is not one of the checkpoints")
    for i, turn in enumerate(m["turns"]):
        for name in ("user_message_id", "assistant_message_id"):
            conversation.check_message(turn[name], f"turns[{i}].{name}")
        if turn["checkpoint_id"] is not None and turn["checkpoint_id"] not in checkpoint_ids:
            raise missing(f"turns[{i}].checkpoint_id", "is not one of the checkpoints")
    summaries = [mem for mem in m["memories"] if mem["summary_of"] is not None]
    if any(mem["summary_of"] != sid for mem in summaries) or len(summaries) > 1:
        raise bad("memories[].summary_of", "at most one memory, the summary of this session")
    for mem in m["memories"]:
        _dict(mem["metadata"], "memories[].metadata")
    # Git: commits (with parents and trees), then every tree below every root.
    commit_roots = {c["sha"]: f"commits[{i}].sha" for i, c in enumerate(m["commits"])}
    if session["commit_head"] is not None:
        commit_roots.setdefault(session["commit_head"], "session.commit_head")
    for sha in commit_roots:
        if not checks.SHA.fullmatch(sha):
            raise bad(commit_roots[sha], "must be a 40-hex commit id")
    for sha in tree_roots:
        if not checks.SHA.fullmatch(sha):
            raise bad(tree_roots[sha], "must be a 40-hex tree id")
    commit_trees = objects.commits(commit_roots)
    for i, c in enumerate(m["commits"]):
        commit = objects.scanned.kept[c["sha"]]
        if commit.tree.decode() != c["tree"]:  # type: ignore[attr-defined]
            raise bad(f"commits[{i}].tree", "is not the tree of its commit")
    for sha in sorted(commit_trees):
        tree_roots.setdefault(sha, f"the tree of a commit ({sha})")
    objects.check_trees(tree_roots)


# -- writing ---------------------------------------------------------------------------------


def _workspace(tx: Tx, account_id: str, original: str, requested: str | None) -> str:
    """``requested`` (404 if the account has none), else the original's when the account
    has it, else ``default``."""
    if requested is not None:
        workspaces.require(tx, account_id, requested)
        return requested
    w = t.workspaces
    found = tx.conn.execute(
        sa.select(w.c.id).where(w.c.account_id == account_id, w.c.id == original)
    ).first()
    return original if found is not None else "default"


def _chunks(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def _insert(tx: Tx, table: sa.Table, items: list[dict[str, Any]]) -> None:
    for chunk in _chunks(items):
        tx.conn.execute(table.insert(), chunk)


def _objects(tx: Tx, account_id: str, p: Prepared) -> None:
    """The pack's objects, their zlib bytes stored as they are; present ones are kept."""
    g = t.git_objects
    insert = (postgresql.insert(g) if tx.is_postgres else sqlite.insert(g)).on_conflict_do_nothing()
    batch: list[dict[str, Any]] = []
    for sha, entry in sorted(p.scanned.entries.items(), key=lambda item: item[1].start):
        data = pack.stored(p.opened.pack, entry)
        batch.append(
            {
                "account_id": account_id,
                "sha": sha,
                "type": entry.type_num,
                "size": entry.size,
                "data": data,
            }
        )
        if len(batch) == BATCH:
            tx.conn.execute(insert, batch)
            batch = []
    if batch:
        tx.conn.execute(insert, batch)


def _session(tx: Tx, account_id: str, workspace_id: str, p: Prepared, ids: Ids) -> dict[str, Any]:
    s = p.session
    now = tx.now
    conversation = ids.path(s["conversation"])
    row: dict[str, Any] = {name: s[name] for name in rows.SESSION.names}
    row.update(
        id=new_id("ses"),
        account_id=account_id,
        workspace_id=workspace_id,
        activity="idle",
        parent_id=None,
        forked_from=None,
        conversation=conversation,
        message_count=P.count(conversation),
        revert_undo=ids.maybe("checkpoint", s["revert_undo"]),
        sandbox=dict(EMPTY_SANDBOX),
        sandbox_host=None,
        sandbox_due=None,
        acp_session_id=None,
        lifecycle_version=1,
        created_at=now,
        updated_at=now,
        last_activity_at=now,
        summary_due=now if s["status"] == "closed" and s["summary"] is None else None,
        imported_from={"sessionId": s["id"], "exportedAt": p.manifest["exportedAt"]},
    )
    row["doc"] = session_doc(row)
    return row


def _owned(
    p: Prepared, row: dict[str, Any], ids: Ids
) -> list[tuple[rows.Spec, list[dict[str, Any]]]]:
    """Every session-owned row as it is inserted, in ``rows.OWNED`` order."""
    m, sid, ws, now = p.manifest, row["id"], row["workspace_id"], row["created_at"]
    account_id = row["account_id"]
    live_turns = {turn["id"] for turn in m["turns"] if turn["status"] not in ENDED}
    turn_ids = {turn["id"] for turn in m["turns"]}

    def checkpoint(cp: dict[str, Any]) -> dict[str, Any]:
        return cp | {
            "id": ids.new("checkpoint", cp["id"]),
            "conversation": ids.path(cp["conversation"]),
            "message_id": ids.maybe("message", cp["message_id"]),
            "before_message_id": ids.maybe("message", cp["before_message_id"]),
            "tasks": [x | {"id": ids.new("task", x["id"])} for x in cp["tasks"]],
        }

    def annotation(ann: dict[str, Any]) -> dict[str, Any]:
        target = dict(ann["target"])
        if "messageId" in target:
            target["messageId"] = ids.new("message", target["messageId"])
        if target.get("checkpointId") is not None:
            target["checkpointId"] = ids.new("checkpoint", target["checkpointId"])
        return ann | {"id": ids.new("annotation", ann["id"]), "target": target}

    def approval(apr: dict[str, Any]) -> dict[str, Any]:
        out = apr | {"id": ids.new("approval", apr["id"]), "workspace_id": ws}
        details = apr["details"]
        turn = details.get("turnId") if isinstance(details, dict) else None
        if isinstance(turn, str) and turn in turn_ids:
            out["details"] = details | {"turnId": ids.new("turn", turn)}
            if turn in live_turns and apr["status"] == "pending":
                out.update(status="cancelled", decided_by="turn", decided_at=now, updated_at=now)
        return out

    def turn(tr: dict[str, Any]) -> dict[str, Any]:
        out = tr | {
            "id": ids.new("turn", tr["id"]),
            "user_message_id": ids.maybe("message", tr["user_message_id"]),
            "assistant_message_id": ids.maybe("message", tr["assistant_message_id"]),
            "checkpoint_id": ids.maybe("checkpoint", tr["checkpoint_id"]),
            "owner": None,
            "heartbeat_at": None,
        }
        if tr["status"] not in ENDED:
            out.update(
                status="cancelled",
                stop_reason="cancelled",
                ended_at=now,
                error="the turn had not ended when the session was exported",
            )
        return out

    def memory(mem: dict[str, Any]) -> dict[str, Any]:
        return mem | {
            "id": ids.new("memory", mem["id"]),
            "workspace_id": None if mem["workspace_id"] is None else ws,
            "summary_of": None if mem["summary_of"] is None else sid,
        }

    shape: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "checkpoints": checkpoint,
        "tasks": lambda x: x | {"id": ids.new("task", x["id"])},
        "notes": lambda x: x | {"id": ids.new("note", x["id"]), "workspace_id": ws},
        "annotations": annotation,
        "approvals": approval,
        "turns": turn,
        "memories": memory,
    }
    out = []
    for spec in rows.OWNED:
        reshape = shape.get(spec.key, dict)
        made = [
            rows.db_row(spec, reshape(dict(r)) | {"session_id": sid}, account_id)
            for r in m[spec.key]
        ]
        out.append((spec, made))
    return out


# kind → (manifest key, id field) whose ids are reserved in their order.
_KINDS = {
    "message": ("messages", "id"),
    "checkpoint": ("checkpoints", "id"),
    "task": ("tasks", "id"),
    "note": ("notes", "id"),
    "annotation": ("annotations", "id"),
    "approval": ("approvals", "id"),
    "turn": ("turns", "id"),
    "memory": ("memories", "id"),
}


def _reserved(m: dict[str, Any]) -> Ids:
    ids = Ids()
    ids.reserve("branch", m["branches"])
    for kind, (key, field) in _KINDS.items():
        ids.reserve(kind, (row[field] for row in m[key]))
    return ids


def apply(
    tx: Tx, account_id: str, p: Prepared, *, workspace_id: str | None = None
) -> dict[str, Any]:
    """Write the prepared archive as a new session of ``account_id`` (one transaction);
    returns the session row. 404 only when ``workspace_id`` names no workspace."""
    ObjectStore(tx, account_id)  # the object store's lock: gc waits until this commits
    target = _workspace(tx, account_id, p.session["workspace_id"], workspace_id)
    _objects(tx, account_id, p)
    ids = _reserved(p.manifest)
    row = _session(tx, account_id, target, p, ids)
    tx.conn.execute(t.sessions.insert(), row)
    sid = row["id"]
    _insert(
        tx,
        t.session_tags,
        [{"session_id": sid, "tag": tag, "account_id": account_id} for tag in row["tags"]],
    )
    _insert(
        tx,
        t.conversation_refs,
        [{"branch_id": ids.new("branch", b), "session_id": sid} for b in p.manifest["branches"]],
    )
    messages = [
        rows.db_row(
            rows.MESSAGES,
            msg
            | {
                "id": ids.new("message", msg["id"]),
                "branch_id": ids.new("branch", msg["branch_id"]),
                "session_id": sid,
            },
            account_id,
        )
        for msg in p.manifest["messages"]
    ]
    _insert(tx, t.messages, messages)
    for spec, made in _owned(p, row, ids):
        _insert(tx, spec.table, made)
    if p.manifest["memories"]:  # (their vectors are made by the embedding job)
        memories.note_change(tx, account_id, items=len(p.manifest["memories"]), vectors_lost=False)
    kernel.emit(
        tx,
        row,
        "session.created",
        {
            "session": render_session(row, tx.now, context=False),
            "importedFrom": row["imported_from"],
        },
    )
    return row


__all__ = ["InvalidArchive", "Limits", "Prepared", "apply", "prepare"]
