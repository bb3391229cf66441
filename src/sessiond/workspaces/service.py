"""Workspace service: create, list, get, rename, delete. All calls are scoped by account."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import AlreadyExists, Conflict, NotFound, WorkspaceNotEmpty, invalid
from sessiond.ids import iso
from sessiond.pagination import keyset

DEFAULT = "default"
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _not_found(workspace_id: str) -> NotFound:
    return NotFound(f"workspace {workspace_id!r} not found; GET /v1/workspaces lists them")


def ensure_default(tx: Tx, account_id: str) -> None:
    """Create the ``default`` workspace of an account if it is missing."""
    exists = tx.conn.execute(
        sa.select(t.workspaces.c.id).where(
            t.workspaces.c.account_id == account_id, t.workspaces.c.id == DEFAULT
        )
    ).first()
    if exists is None:
        tx.conn.execute(
            t.workspaces.insert().values(
                account_id=account_id,
                id=DEFAULT,
                name="Default",
                created_at=tx.now,
                updated_at=tx.now,
            )
        )


def get(tx: Tx, account_id: str, workspace_id: str) -> dict[str, Any]:
    row = tx.conn.execute(
        sa.select(t.workspaces).where(
            t.workspaces.c.account_id == account_id, t.workspaces.c.id == workspace_id
        )
    ).first()
    if row is None:
        raise _not_found(workspace_id)
    return dict(row._mapping)


_EXISTS = sa.select(t.workspaces.c.id).where(
    t.workspaces.c.account_id == sa.bindparam("account_id"),
    t.workspaces.c.id == sa.bindparam("workspace_id"),
)


def require(tx: Tx, account_id: str, workspace_id: str) -> None:
    """Raise 404 unless the workspace exists in this account (on every session create)."""
    found = tx.conn.execute(_EXISTS, {"account_id": account_id, "workspace_id": workspace_id})
    if found.first() is None:
        raise _not_found(workspace_id)


def render(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def list_page(
    tx: Tx, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the account's workspaces (rendered) ordered by id, and the next cursor."""
    q = sa.select(t.workspaces).where(t.workspaces.c.account_id == account_id)
    rows, next_cursor = keyset(tx, q, t.workspaces.c.id, "workspaces", limit=limit, cursor=cursor)
    return [render(r) for r in rows], next_cursor


def create(tx: Tx, account_id: str, workspace_id: str, name: str | None) -> dict[str, Any]:
    if not ID_RE.fullmatch(workspace_id):
        raise invalid("id", "must match [a-z0-9][a-z0-9-]{0,62}")
    existing = tx.conn.execute(
        sa.select(t.workspaces.c.id).where(
            t.workspaces.c.account_id == account_id, t.workspaces.c.id == workspace_id
        )
    ).first()
    if existing is not None:
        raise AlreadyExists(f"workspace {workspace_id!r} already exists; choose another id")
    row = {
        "account_id": account_id,
        "id": workspace_id,
        "name": name if name is not None else workspace_id,
        "created_at": tx.now,
        "updated_at": tx.now,
    }
    tx.conn.execute(t.workspaces.insert().values(**row))
    tx.emit(account_id, "workspace.created", {"id": workspace_id}, workspace_id=workspace_id)
    return row


def update(tx: Tx, account_id: str, workspace_id: str, name: str | None) -> dict[str, Any]:
    row = get(tx, account_id, workspace_id)
    if name is not None and name != row["name"]:
        tx.conn.execute(
            t.workspaces.update()
            .where(t.workspaces.c.account_id == account_id, t.workspaces.c.id == workspace_id)
            .values(name=name, updated_at=tx.now)
        )
        row.update(name=name, updated_at=tx.now)
        tx.emit(
            account_id,
            "workspace.updated",
            {"id": workspace_id, "name": name},
            workspace_id=workspace_id,
        )
    return row


def delete(tx: Tx, account_id: str, workspace_id: str) -> None:
    get(tx, account_id, workspace_id)
    if workspace_id == DEFAULT:
        raise Conflict("the default workspace cannot be deleted")
    in_use = tx.conn.execute(
        sa.select(t.sessions.c.id)
        .where(
            t.sessions.c.account_id == account_id,
            t.sessions.c.workspace_id == workspace_id,
            t.sessions.c.deleted_at.is_(None),  # a deleted one waiting for its purge is gone
        )
        .limit(1)
    ).first()
    if in_use is not None:
        raise WorkspaceNotEmpty(
            f"workspace {workspace_id!r} still has sessions; delete or move them first"
        )
    tx.conn.execute(
        t.workspaces.delete().where(
            t.workspaces.c.account_id == account_id, t.workspaces.c.id == workspace_id
        )
    )
    tx.emit(account_id, "workspace.deleted", {"id": workspace_id}, workspace_id=workspace_id)
