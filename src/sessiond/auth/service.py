"""Accounts and API keys. Secrets are shown once and stored as SHA-256 hashes.

Keys are 256-bit random strings, so a fast hash is the right tool (no password
stretching needed); lookups are by the hash's unique index.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from sessiond.auth.principal import ROLES, Principal
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import AlreadyExists, Conflict, NotFound, invalid
from sessiond.ids import iso, new_id
from sessiond.pagination import keyset
from sessiond.workspaces import service as workspaces

SECRET_PREFIX = "sk_"
DEFAULT_ACCOUNT = "default"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def create_account(tx: Tx, name: str) -> dict[str, Any]:
    """Create an account and its ``default`` workspace. Names are unique."""
    name = name.strip()
    if not name or len(name) > 200:
        raise invalid("name", "must be 1 to 200 characters")
    exists = tx.conn.execute(sa.select(t.accounts.c.id).where(t.accounts.c.name == name)).first()
    if exists is not None:
        raise AlreadyExists(f"account {name!r} already exists")
    account_id = new_id("acc")
    row: dict[str, Any] = {"id": account_id, "name": name, "created_at": tx.now}
    tx.conn.execute(t.accounts.insert().values(**row))
    workspaces.ensure_default(tx, account_id)
    return row


def account_by_name(tx: Tx, name: str) -> dict[str, Any]:
    row = tx.conn.execute(sa.select(t.accounts).where(t.accounts.c.name == name)).first()
    if row is None:
        raise NotFound(f"account {name!r} not found; `sessiond accounts create {name}` makes it")
    return dict(row._mapping)


def create_key(tx: Tx, account_id: str, name: str, role: str) -> tuple[dict[str, Any], str]:
    """Create a key; returns ``(row, secret)``. The secret is never stored."""
    if role not in ROLES:
        raise invalid("role", "must be one of admin, write, read")
    name = name.strip()
    if not name or len(name) > 200:
        raise invalid("name", "must be 1 to 200 characters")
    secret = new_secret()
    row = {
        "id": new_id("key"),
        "account_id": account_id,
        "name": name,
        "role": role,
        "prefix": secret[:10],
        "secret_hash": hash_secret(secret),
        "created_at": tx.now,
        "revoked_at": None,
    }
    tx.conn.execute(t.api_keys.insert().values(**row))
    return row, secret


def _keys(account_id: str | None) -> sa.Select[Any]:
    q = sa.select(t.api_keys, t.accounts.c.name.label("account_name")).join(
        t.accounts, t.accounts.c.id == t.api_keys.c.account_id
    )
    return q if account_id is None else q.where(t.api_keys.c.account_id == account_id)


def list_keys(tx: Tx, account_id: str | None) -> list[dict[str, Any]]:
    """Every key of an account (of all accounts when ``account_id`` is None), oldest
    first: the operator's CLI listing."""
    rows = tx.conn.execute(_keys(account_id).order_by(t.api_keys.c.id)).all()
    return [dict(r._mapping) for r in rows]


def key_page(
    tx: Tx, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an account's keys (rendered), oldest first, and the next cursor."""
    rows, next_cursor = keyset(
        tx, _keys(account_id), t.api_keys.c.id, "keys", limit=limit, cursor=cursor
    )
    return [render_key(r) for r in rows], next_cursor


def revoke_key(tx: Tx, account_id: str | None, key_id: str) -> dict[str, Any]:
    """Revoke a key (idempotent). ``account_id=None`` is the operator's CLI scope.

    The last live admin key of an account cannot be revoked (409 ``conflict``): nobody
    could manage the account's keys any more. The account's admin keys are locked first,
    so two concurrent revokes of its last two admin keys cannot both pass.
    """
    q = sa.select(t.api_keys).where(t.api_keys.c.id == key_id)
    if account_id is not None:
        q = q.where(t.api_keys.c.account_id == account_id)
    row = tx.conn.execute(q).first()
    if row is None:
        raise NotFound(f"key {key_id} not found")
    if row.revoked_at is None and row.role == "admin":
        k = t.api_keys
        admins = tx.conn.execute(
            sa.select(k.c.id)
            .where(k.c.account_id == row.account_id, k.c.role == "admin", k.c.revoked_at.is_(None))
            .with_for_update()
        ).all()
        if [a.id for a in admins] == [key_id]:
            raise Conflict(
                f"key {key_id} is the account's last admin key; create another admin key "
                "(POST /v1/keys with role admin), then revoke this one"
            )
    if row.revoked_at is None:
        tx.conn.execute(
            t.api_keys.update().where(t.api_keys.c.id == key_id).values(revoked_at=tx.now)
        )
    return {**row._mapping, "revoked_at": row.revoked_at or tx.now}


def render_key(row: dict[str, Any]) -> dict[str, Any]:
    """A key as the API and the CLI show it (never the secret or its hash)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "role": row["role"],
        "prefix": row["prefix"],
        "createdAt": iso(row["created_at"]),
        "revokedAt": iso(row["revoked_at"]),
    }


def authenticate(tx: Tx, secret: str) -> Principal | None:
    """The principal for a secret, or None if it is unknown or revoked."""
    row = tx.conn.execute(
        sa.select(
            t.api_keys.c.id,
            t.api_keys.c.name,
            t.api_keys.c.role,
            t.api_keys.c.prefix,
            t.api_keys.c.revoked_at,
            t.accounts.c.id.label("account_id"),
            t.accounts.c.name.label("account_name"),
        )
        .join(t.accounts, t.accounts.c.id == t.api_keys.c.account_id)
        .where(t.api_keys.c.secret_hash == hash_secret(secret))
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    return Principal(
        account_id=row.account_id,
        account_name=row.account_name,
        key_id=row.id,
        key_name=row.name,
        role=row.role,
        prefix=row.prefix,
    )


def bootstrap(tx: Tx) -> str | None:
    """On the very first start: the ``default`` account and an admin key.

    Returns the new secret, or None when any account already exists.
    """
    if tx.conn.execute(sa.select(t.accounts.c.id).limit(1)).first() is not None:
        return None
    account = create_account(tx, DEFAULT_ACCOUNT)
    _row, secret = create_key(tx, account["id"], "admin (bootstrap)", "admin")
    return secret
