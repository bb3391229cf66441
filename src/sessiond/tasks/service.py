"""Task service: the session's todo list / agent plan, kept in order.

The list of a session is small (at most ``MAX_TASKS``), so every write loads it whole,
computes the new list in order and writes only the rows that changed. Positions stay
dense (``0..n-1``). Writes lock the session row (``kernel.lock_light``), so the
list of one session is changed by one request at a time, and each request that changes
something emits exactly one ``task.updated`` event with the full list after it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import NotFound, ValidationFailed, invalid
from sessiond.ids import iso, new_id
from sessiond.sessions import kernel
from sessiond.tasks.models import MAX_TASKS, TaskCreate, TaskList, TaskPatch

FIELDS = ("content", "status", "priority")
tk = t.tasks


def task_not_found(task_id: str) -> NotFound:
    return NotFound(f"task {task_id} not found in this session")


def render(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sessionId": row["session_id"],
        "content": row["content"],
        "status": row["status"],
        "priority": row["priority"],
        "position": row["position"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


# -- reads ---------------------------------------------------------------------------------

_TASKS = (
    sa.select(tk)
    .where(tk.c.session_id == sa.bindparam("session_id"))
    .order_by(tk.c.position, tk.c.id)
)


def _rows(tx: Tx, session_id: str) -> list[dict[str, Any]]:
    """The session's task rows in order (stored positions are always ``0..n-1``)."""
    return [dict(r._mapping) for r in tx.conn.execute(_TASKS, {"session_id": session_id})]


def list_for_session(tx: Tx, session_id: str) -> list[dict[str, Any]]:
    """The session's tasks, rendered, in order (no account check: for internal callers)."""
    return [render(row) for row in _rows(tx, session_id)]


def list_tasks(tx: Tx, account_id: str, session_id: str) -> list[dict[str, Any]]:
    kernel.require_exists(tx, account_id, session_id)
    return list_for_session(tx, session_id)


def get(tx: Tx, account_id: str, session_id: str, task_id: str) -> dict[str, Any]:
    kernel.require_exists(tx, account_id, session_id)
    for row in _rows(tx, session_id):
        if row["id"] == task_id:
            return render(row)
    raise task_not_found(task_id)


# -- writes --------------------------------------------------------------------------------


def _lock(
    tx: Tx, account_id: str, session_id: str, if_match: int | str | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Lock the active session; its task rows in order."""
    session = kernel.lock_active(tx, account_id, session_id, if_match=if_match)
    return session, _rows(tx, session_id)


def _save(
    tx: Tx,
    session: dict[str, Any],
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    change: str,
    task_id: str | None,
) -> list[dict[str, Any]]:
    """Write the difference between two lists (positions from the order of ``after``),
    emit the one ``task.updated`` event if anything changed. Returns the rendered list."""
    old = {row["id"]: row for row in before}
    for i, row in enumerate(after):
        row["position"] = i
    new_ids = {row["id"] for row in after}
    gone = [tid for tid in old if tid not in new_ids]
    added = [row for row in after if row["id"] not in old]
    moved = [
        row
        for row in after
        if row["id"] in old
        and any(row[k] != old[row["id"]][k] for k in (*FIELDS, "position", "updated_at"))
    ]
    if gone:
        tx.conn.execute(tk.delete().where(tk.c.id.in_(gone)))
    if added:
        tx.conn.execute(
            tk.insert(),
            [
                {
                    "id": row["id"],
                    "account_id": session["account_id"],
                    "session_id": session["id"],
                    "position": row["position"],
                    "content": row["content"],
                    "status": row["status"],
                    "priority": row["priority"],
                    "created_at": row["created_at"],
                    "updated_at": row["updated_at"],
                }
                for row in added
            ],
        )
    if moved:
        tx.conn.execute(
            tk.update()
            .where(tk.c.id == sa.bindparam("_id"))
            .values(
                position=sa.bindparam("_position"),
                content=sa.bindparam("_content"),
                status=sa.bindparam("_status"),
                priority=sa.bindparam("_priority"),
                updated_at=sa.bindparam("_updated_at"),
            ),
            [
                {
                    "_id": row["id"],
                    "_position": row["position"],
                    "_content": row["content"],
                    "_status": row["status"],
                    "_priority": row["priority"],
                    "_updated_at": row["updated_at"],
                }
                for row in moved
            ],
        )
    rendered = [render(row) for row in after]
    if gone or added or moved:
        data = {"change": change, "taskId": task_id, "tasks": rendered}
        kernel.emit(tx, session, "task.updated", data, activity=True)
    return rendered


def _new_row(tx: Tx, session_id: str, content: str, status: str, priority: str) -> dict[str, Any]:
    return {
        "id": new_id("tsk"),
        "session_id": session_id,
        "content": content,
        "status": status,
        "priority": priority,
        "position": 0,
        "created_at": tx.now,
        "updated_at": tx.now,
    }


def replace(
    tx: Tx,
    account_id: str,
    session_id: str,
    body: TaskList,
    *,
    if_match: int | str | None = None,
) -> list[dict[str, Any]]:
    """PUT: the list becomes exactly ``body.tasks``, in that order.

    An item with the ``id`` of one of this session's tasks keeps that id and createdAt
    (updatedAt moves only if its content, status or priority changed); omitted status
    and priority take their defaults, as for a new task. Tasks left out are deleted.
    """
    if len(body.tasks) > MAX_TASKS:
        raise invalid("tasks", f"at most {MAX_TASKS} tasks per session")
    session, before = _lock(tx, account_id, session_id, if_match)
    old = {row["id"]: row for row in before}
    errors: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(body.tasks):
        if item.id is None:
            continue
        if item.id in seen:
            errors.append({"field": f"tasks[{i}].id", "message": "this id appears twice"})
        elif item.id not in old:
            errors.append(
                {
                    "field": f"tasks[{i}].id",
                    "message": f"no task {item.id} in this session; omit id for a new task",
                }
            )
        seen.add(item.id)
    if errors:
        raise ValidationFailed(errors)
    after: list[dict[str, Any]] = []
    for item in body.tasks:
        if item.id is None:
            after.append(_new_row(tx, session_id, item.content, item.status, item.priority))
            continue
        row = dict(old[item.id])
        values = {"content": item.content, "status": item.status, "priority": item.priority}
        if any(row[k] != val for k, val in values.items()):
            row.update(values, updated_at=tx.now)
        after.append(row)
    return _save(tx, session, before, after, "replaced", None)


def create(
    tx: Tx,
    account_id: str,
    session_id: str,
    body: TaskCreate,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """POST: one task, appended or inserted at ``position`` (0-based)."""
    session, before = _lock(tx, account_id, session_id, if_match)
    n = len(before)
    if n >= MAX_TASKS:
        raise invalid("tasks", f"this session already has {MAX_TASKS} tasks, the most allowed")
    position = n if body.position is None else body.position
    if not 0 <= position <= n:
        raise invalid("position", f"must be between 0 and {n} (the number of tasks)")
    row = _new_row(tx, session_id, body.content, body.status, body.priority)
    after = [dict(r) for r in before]
    after.insert(position, row)
    rendered = _save(tx, session, before, after, "created", row["id"])
    return rendered[position]


def update(
    tx: Tx,
    account_id: str,
    session_id: str,
    task_id: str,
    body: TaskPatch,
    *,
    if_match: int | str | None = None,
) -> dict[str, Any]:
    """PATCH: the fields given; ``position`` moves the task (0-based, within the list)."""
    given = body.model_fields_set
    for name in (*FIELDS, "position"):
        if name in given and getattr(body, name) is None:
            raise invalid(name, "may not be null")
    session, before = _lock(tx, account_id, session_id, if_match)
    index = next((i for i, r in enumerate(before) if r["id"] == task_id), None)
    if index is None:
        raise task_not_found(task_id)
    n = len(before)
    if body.position is not None and not 0 <= body.position < n:
        raise invalid("position", f"must be between 0 and {n - 1} (the last task)")
    after = [dict(r) for r in before]
    row = after.pop(index)
    values = {k: getattr(body, k) for k in FIELDS if k in given}
    position = index if body.position is None else body.position
    if any(row[k] != val for k, val in values.items()) or position != index:
        row.update(values, updated_at=tx.now)
    after.insert(position, row)
    return _save(tx, session, before, after, "updated", task_id)[position]


def delete(
    tx: Tx,
    account_id: str,
    session_id: str,
    task_id: str,
    *,
    if_match: int | str | None = None,
) -> None:
    session, before = _lock(tx, account_id, session_id, if_match)
    after = [dict(r) for r in before if r["id"] != task_id]
    if len(after) == len(before):
        raise task_not_found(task_id)
    _save(tx, session, before, after, "deleted", task_id)


def replace_from_state(
    tx: Tx, session: dict[str, Any], saved: list[dict[str, Any]], *, keep_ids: bool = True
) -> list[dict[str, Any]]:
    """Make the task list what a checkpoint saved (``[{id, content, status, priority}]``).

    Restoring a session's own checkpoint keeps the saved ids (a task deleted since comes
    back with its id); a fork (``keep_ids=False``) gets new ids. One ``task.updated``
    event (``change: "restored"``) if anything changed.
    """
    before = _rows(tx, session["id"])
    current = {row["id"]: row for row in before}
    after: list[dict[str, Any]] = []
    for item in saved:
        task_id = item.get("id") if keep_ids else None
        if task_id is not None and task_id in current:
            row = dict(current[task_id])
            if any(row[k] != item[k] for k in FIELDS):
                row.update({k: item[k] for k in FIELDS}, updated_at=tx.now)
            after.append(row)
            continue
        row = _new_row(tx, session["id"], item["content"], item["status"], item["priority"])
        if task_id is not None:
            row["id"] = task_id
        after.append(row)
    return _save(tx, session, before, after, "restored", None)
