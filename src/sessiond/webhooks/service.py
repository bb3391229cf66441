"""Webhook service: subscriptions (admin, per account) and their delivery log.

The dispatcher's steps are here too, each one transaction (docs/design/webhooks.md):
``claim`` a lease on webhooks with work, ``fan_out`` new events into deliveries,
``heads`` (the oldest pending deliveries), ``record`` attempts' outcomes, ``release``.
Every step that changes a webhook's deliveries checks that the caller still holds its
lease, so an instance that lost it (paused past its expiry) changes nothing.

Subscription writes emit ``webhook.created|updated|deleted`` (never the secret);
deactivation emits ``webhook.deactivated``. Attempts emit nothing: an event per attempt
would itself be delivered, and a failing webhook subscribed to ``*`` would feed itself.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import Conflict, NotFound, invalid
from sessiond.events.store import DELETED, EventFilter, render_event
from sessiond.ids import iso, new_id
from sessiond.pagination import keyset
from sessiond.sessions import kernel
from sessiond.webhooks import signing
from sessiond.webhooks.models import (
    SECRET_MAX,
    SECRET_MIN,
    TYPE_CHARS,
    TYPES_MAX,
    WebhookCreate,
    WebhookPatch,
)
from sessiond.webhooks.targets import TargetRefused, check_url
from sessiond.workspaces import service as workspaces

w = t.webhooks
d = t.webhook_deliveries
STATUSES = ("pending", "succeeded", "failed")
JITTER = 0.2


@dataclass(frozen=True)
class Policy:
    """The retry and deactivation rules (from Settings)."""

    max_attempts: int
    retry_base_seconds: float
    deactivate_after: int

    def delay_ms(self, attempts: int) -> int:
        """The wait before the next attempt after ``attempts`` failed ones, jittered."""
        base = self.retry_base_seconds * 2 ** (attempts - 1)
        return int(base * random.uniform(1 - JITTER, 1 + JITTER) * 1000)


def not_found(webhook_id: str) -> NotFound:
    return NotFound(f"webhook {webhook_id} not found")


def render(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "types": row["types"],
        "workspaceId": row["workspace_id"],
        "active": row["active"],
        "deactivatedReason": row["deactivated_reason"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def render_delivery(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "webhookId": row["webhook_id"],
        "eventId": row["event_id"],
        "eventType": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "lastStatusCode": row["last_status_code"],
        "lastError": row["last_error"],
        "nextAttemptAt": iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _check_url(url: str) -> None:
    try:
        check_url(url)
    except TargetRefused as e:
        raise invalid("url", str(e)) from None


def _check_types(types: list[str]) -> list[str]:
    if not 1 <= len(types) <= TYPES_MAX:
        raise invalid("types", f"1 to {TYPES_MAX} event types or prefixes ('*': every event)")
    out: list[str] = []
    for value in types:
        item = value.strip()
        if len(item) > TYPE_CHARS:
            raise invalid("types", f"each type or prefix is at most {TYPE_CHARS} characters")
        if not item or any(c.isspace() for c in item) or "*" in item[:-1]:
            raise invalid("types", f"{value!r} is not an event type or prefix")
        if item not in out:
            out.append(item)
    return out


def _check_secret(secret: str | None) -> None:
    if secret is not None and not SECRET_MIN <= len(secret) <= SECRET_MAX:
        raise invalid("secret", f"{SECRET_MIN} to {SECRET_MAX} characters")


# -- subscriptions -------------------------------------------------------------------------


def _row(tx: Tx, account_id: str, webhook_id: str, *, lock: bool = False) -> dict[str, Any]:
    q = sa.select(w).where(w.c.id == webhook_id, w.c.account_id == account_id)
    if lock and tx.is_postgres:
        q = q.with_for_update()
    row = tx.conn.execute(q).first()
    if row is None:
        raise not_found(webhook_id)
    return dict(row._mapping)


def _event(tx: Tx, row: dict[str, Any], kind: str, **extra: Any) -> None:
    data = {"webhookId": row["id"], "url": row["url"], "types": row["types"], **extra}
    tx.emit(row["account_id"], f"webhook.{kind}", data, workspace_id=row["workspace_id"])


def create(tx: Tx, account_id: str, body: WebhookCreate, *, per_account: int) -> dict[str, Any]:
    """A new webhook; its deliveries start with the next event. Returns
    ``{"webhook", "secret"}`` (the only time the secret is shown)."""
    _check_url(body.url)
    types = _check_types(body.types)
    _check_secret(body.secret)
    if body.workspace_id is not None:
        workspaces.require(tx, account_id, body.workspace_id)
    count = tx.conn.execute(
        sa.select(sa.func.count()).select_from(w).where(w.c.account_id == account_id)
    ).scalar_one()
    if count >= per_account:
        raise Conflict(f"this account has {count} webhooks, the most it may have")
    secret = body.secret or signing.new_secret()
    row = {
        "id": new_id("whk"),
        "account_id": account_id,
        "url": body.url,
        "types": types,
        "workspace_id": body.workspace_id,
        "secret": secret,
        "active": body.active,
        "cursor": 0,  # set below: its own creation event
        "failed_in_a_row": 0,
        "deactivated_reason": None,
        "lease_owner": None,
        "lease_until": None,
        "created_at": tx.now,
        "updated_at": tx.now,
    }
    # Its deliveries start after its own creation event (ids follow commit order).
    _event(tx, row, "created", active=row["active"])
    tx.flush_events()
    row["cursor"] = tx.events[-1]["id"]
    tx.conn.execute(w.insert().values(**row))
    return {"webhook": render(row), "secret": secret}


def get(tx: Tx, account_id: str, webhook_id: str) -> dict[str, Any]:
    return render(_row(tx, account_id, webhook_id))


def list_page(
    tx: Tx, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    rows, next_cursor = keyset(
        tx,
        sa.select(w).where(w.c.account_id == account_id),
        w.c.id,
        "webhooks",
        limit=limit,
        cursor=cursor,
    )
    return [render(r) for r in rows], next_cursor


def update(tx: Tx, account_id: str, webhook_id: str, body: WebhookPatch) -> dict[str, Any]:
    """Change the fields given. ``active: true`` on a deactivated webhook resumes it where
    it stopped (its cursor and pending deliveries are kept) and clears the failure count."""
    given = body.model_fields_set
    for name in ("url", "types", "secret", "active"):
        if name in given and getattr(body, name) is None:
            raise invalid(name, "may not be null")
    row = _row(tx, account_id, webhook_id, lock=True)
    values: dict[str, Any] = {}
    if body.url is not None:
        _check_url(body.url)
        values["url"] = body.url
    if body.types is not None:
        values["types"] = _check_types(body.types)
    if "workspace_id" in given:
        if body.workspace_id is not None:
            workspaces.require(tx, account_id, body.workspace_id)
        values["workspace_id"] = body.workspace_id
    if body.secret is not None:
        _check_secret(body.secret)
        values["secret"] = body.secret
    if body.active is not None:
        values["active"] = body.active
        if body.active and not row["active"]:
            values["failed_in_a_row"] = 0
            values["deactivated_reason"] = None
    if not values:
        return render(row)
    values["updated_at"] = tx.now
    tx.conn.execute(w.update().where(w.c.id == webhook_id).values(**values))
    row.update(values)
    changed = sorted("workspaceId" if k == "workspace_id" else k for k in values)
    _event(
        tx, row, "updated", active=row["active"], changed=[c for c in changed if c != "updated_at"]
    )
    return render(row)


def delete(tx: Tx, account_id: str, webhook_id: str) -> None:
    """Remove the webhook and its delivery log; nothing more is sent for it."""
    row = _row(tx, account_id, webhook_id, lock=True)
    tx.conn.execute(d.delete().where(d.c.webhook_id == webhook_id))
    tx.conn.execute(w.delete().where(w.c.id == webhook_id))
    _event(tx, row, "deleted")


# -- the delivery log ----------------------------------------------------------------------


def deliveries_page(
    tx: Tx,
    account_id: str,
    webhook_id: str,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The webhook's deliveries in the order they were made (event id order)."""
    _row(tx, account_id, webhook_id)
    if status is not None and status not in STATUSES:
        raise invalid("status", f"must be one of {', '.join(STATUSES)}")
    q = sa.select(d).where(d.c.webhook_id == webhook_id, d.c.account_id == account_id)
    if status is not None:
        q = q.where(d.c.status == status)
    rows, next_cursor = keyset(tx, q, d.c.id, "deliveries", limit=limit, cursor=cursor)
    return [render_delivery(r) for r in rows], next_cursor


def _delivery(tx: Tx, account_id: str, webhook_id: str, delivery_id: str) -> dict[str, Any]:
    row = tx.conn.execute(
        sa.select(d).where(
            d.c.id == delivery_id, d.c.webhook_id == webhook_id, d.c.account_id == account_id
        )
    ).first()
    if row is None:
        raise NotFound(f"delivery {delivery_id} not found for webhook {webhook_id}")
    return dict(row._mapping)


def get_delivery(tx: Tx, account_id: str, webhook_id: str, delivery_id: str) -> dict[str, Any]:
    _row(tx, account_id, webhook_id)
    return render_delivery(_delivery(tx, account_id, webhook_id, delivery_id))


def retry(tx: Tx, account_id: str, webhook_id: str, delivery_id: str) -> dict[str, Any]:
    """Make a delivery ``pending`` and due now (its attempt count restarts, so it gets
    every attempt again); it goes in its event-id order."""
    _row(tx, account_id, webhook_id, lock=True)
    row = _delivery(tx, account_id, webhook_id, delivery_id)
    values = {"status": "pending", "attempts": 0, "next_attempt_at": tx.now, "updated_at": tx.now}
    tx.conn.execute(d.update().where(d.c.id == delivery_id).values(**values))
    row.update(values)
    return render_delivery(row)


def purge(tx: Tx, before: int, limit: int) -> int:
    """Delete up to ``limit`` final deliveries last changed before ``before``."""
    ids = sa.select(d.c.id).where(d.c.status != "pending", d.c.updated_at < before).limit(limit)
    return tx.conn.execute(d.delete().where(d.c.id.in_(ids.scalar_subquery()))).rowcount


# -- the dispatcher's steps ----------------------------------------------------------------


def _has_work(now: int) -> sa.ColumnElement[bool]:
    """A pending delivery is due, or there is none pending and events wait past the
    cursor. (While a delivery waits for its retry nothing after it can be sent, so new
    events wait too: claiming the webhook for them would only churn its lease.)"""
    pending = d.c.webhook_id == w.c.id, d.c.status == "pending"
    due = sa.exists().where(*pending, d.c.next_attempt_at <= now)
    waiting = sa.exists().where(*pending)
    fresh = sa.exists().where(t.events.c.account_id == w.c.account_id, t.events.c.id > w.c.cursor)
    return sa.or_(due, sa.and_(~waiting, fresh))


def _claimable(now: int, owner: str, busy: list[str]) -> sa.ColumnElement[bool]:
    return sa.and_(
        w.c.active.is_(True),
        sa.or_(w.c.lease_until.is_(None), w.c.lease_until < now, w.c.lease_owner == owner),
        w.c.id.not_in(busy),
        _has_work(now),
    )


def claimable(tx: Tx, owner: str, busy: list[str]) -> bool:
    """Read-only: whether ``claim`` would take anything now."""
    q = sa.select(w.c.id).where(_claimable(tx.now, owner, busy)).limit(1)
    return tx.conn.execute(q).first() is not None


def any_active(tx: Tx) -> bool:
    """Read-only: whether any account has an active webhook (an index-free LIMIT 1)."""
    return (
        tx.conn.execute(sa.select(w.c.id).where(w.c.active.is_(True)).limit(1)).first() is not None
    )


def claim(tx: Tx, owner: str, lease_ms: int, limit: int, busy: list[str]) -> list[str]:
    """Take the lease of up to ``limit`` active webhooks that have work (a pending
    delivery due now, or events past their cursor) and whose lease is free, expired or
    already ``owner``'s (this instance before a restart) — except ``busy``, the ones
    this instance is sending for now. On PostgreSQL the candidates are locked with SKIP
    LOCKED: two instances never claim the same webhook."""
    q = (
        sa.select(w.c.id)
        .where(_claimable(tx.now, owner, busy))
        .order_by(w.c.lease_until.is_not(None), w.c.id)
        .limit(limit)
    )
    if tx.is_postgres:
        q = q.with_for_update(skip_locked=True, of=w)
    ids = [i for (i,) in tx.conn.execute(q)]
    if ids:
        tx.conn.execute(
            w.update()
            .where(w.c.id.in_(ids))
            .values(lease_owner=owner, lease_until=tx.now + lease_ms)
        )
    return ids


def _held(tx: Tx, webhook_id: str, owner: str, lease_ms: int) -> dict[str, Any] | None:
    """The webhook row if ``owner`` still holds its lease (renewed), else None."""
    q = sa.select(w).where(w.c.id == webhook_id)
    if tx.is_postgres:
        q = q.with_for_update()
    row = tx.conn.execute(q).first()
    if row is None or row.lease_owner != owner or not row.active:
        return None
    tx.conn.execute(w.update().where(w.c.id == webhook_id).values(lease_until=tx.now + lease_ms))
    return dict(row._mapping)


def fan_out(tx: Tx, webhook_id: str, owner: str, lease_ms: int, batch: int) -> int | None:
    """Turn up to ``batch`` events past the cursor into pending deliveries (those that
    match) and move the cursor past them. Returns how many events were read (None: the
    lease is lost, or the webhook is inactive or gone)."""
    hook = _held(tx, webhook_id, owner, lease_ms)
    if hook is None:
        return None
    e = t.events
    q = sa.select(e).where(e.c.account_id == hook["account_id"], e.c.id > hook["cursor"])
    rows = [dict(r._mapping) for r in tx.conn.execute(q.order_by(e.c.id).limit(batch))]
    if not rows:
        return 0
    wanted = EventFilter(
        hook["account_id"], workspace_id=hook["workspace_id"], types=tuple(hook["types"])
    )
    # Events of a session deleted but not purged yet are passed over (its deletion is not).
    gone = set(tx.conn.execute(kernel.deleted_ids(hook["account_id"])).scalars())
    made = []
    for event in rows:
        if not wanted.matches(event):
            continue
        if event["session_id"] in gone and event["type"] != DELETED:
            continue
        made.append(
            {
                "id": new_id("whd"),
                "webhook_id": webhook_id,
                "account_id": hook["account_id"],
                "event_id": event["id"],
                "event_type": event["type"],
                "body": json.dumps(render_event(event), separators=(",", ":"), ensure_ascii=False),
                "status": "pending",
                "attempts": 0,
                "last_status_code": None,
                "last_error": None,
                "next_attempt_at": tx.now,
                "created_at": tx.now,
                "updated_at": tx.now,
            }
        )
    if made:
        dialect = postgresql if tx.is_postgres else sqlite
        tx.conn.execute(dialect.insert(d).on_conflict_do_nothing(), made)
    tx.conn.execute(w.update().where(w.c.id == webhook_id).values(cursor=rows[-1]["id"]))
    return len(rows)


@dataclass(frozen=True)
class Head:
    """The webhook's oldest pending delivery, with what sending it needs."""

    delivery_id: str
    event_id: int
    event_type: str
    body: str
    attempts: int
    due_at: int
    url: str
    secret: str


def heads(tx: Tx, webhook_id: str, limit: int) -> tuple[list[Head], bool]:
    """The webhook's oldest ``limit`` pending deliveries in event-id order, and whether
    events past its cursor wait to be fanned out (read-only)."""
    q = (
        sa.select(
            d.c.id,
            d.c.event_id,
            d.c.event_type,
            d.c.body,
            d.c.attempts,
            d.c.next_attempt_at,
            w.c.url,
            w.c.secret,
        )
        .join(w, w.c.id == d.c.webhook_id)
        .where(d.c.webhook_id == webhook_id, d.c.status == "pending")
        .order_by(d.c.event_id)
        .limit(limit)
    )
    out = [
        Head(r.id, r.event_id, r.event_type, r.body, r.attempts, r.next_attempt_at or 0, r.url,
             r.secret)
        for r in tx.conn.execute(q)
    ]  # fmt: skip
    e = t.events
    behind = tx.conn.execute(
        sa.select(
            sa.exists().where(
                w.c.id == webhook_id, e.c.account_id == w.c.account_id, e.c.id > w.c.cursor
            )
        )
    ).scalar_one()
    return out, bool(behind)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None


def record(
    tx: Tx,
    webhook_id: str,
    owner: str,
    lease_ms: int,
    policy: Policy,
    outcomes: list[tuple[str, Outcome]],
) -> bool:
    """Write the outcomes of attempts made one after the other (delivery id, outcome),
    the webhook's failure count, and its deactivation at ``policy.deactivate_after``
    failures in a row. False when the lease is lost: then nothing is written and the
    next holder sends them again (at least once)."""
    hook = _held(tx, webhook_id, owner, lease_ms)
    if hook is None:
        return False
    before = failed_in_a_row = hook["failed_in_a_row"]
    ids = [delivery_id for delivery_id, _ in outcomes]
    rows = {
        r.id: r
        for r in tx.conn.execute(sa.select(d.c.id, d.c.status, d.c.attempts).where(d.c.id.in_(ids)))
    }
    for delivery_id, outcome in outcomes:
        row = rows.get(delivery_id)
        if row is None or row.status != "pending":
            continue  # the webhook was deleted meanwhile: nothing to record
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": outcome.status_code,
            "last_error": None if outcome.ok else (outcome.error or "")[:2000],
            "updated_at": tx.now,
            "next_attempt_at": None,
        }
        if outcome.ok:
            values["status"] = "succeeded"
            failed_in_a_row = 0
        elif attempts >= policy.max_attempts:
            values["status"] = "failed"
            failed_in_a_row += 1
        else:
            values["next_attempt_at"] = tx.now + policy.delay_ms(attempts)
        tx.conn.execute(d.update().where(d.c.id == delivery_id).values(**values))
    if failed_in_a_row == before:
        return True
    hook_values: dict[str, Any] = {"failed_in_a_row": failed_in_a_row}
    if failed_in_a_row >= policy.deactivate_after:
        reason = f"{failed_in_a_row} deliveries in a row failed after every attempt"
        hook_values.update(
            active=False,
            deactivated_reason=reason,
            updated_at=tx.now,
            lease_owner=None,
            lease_until=None,
        )
        hook.update(hook_values)
        _event(tx, hook, "deactivated", reason=reason)
    tx.conn.execute(w.update().where(w.c.id == webhook_id).values(**hook_values))
    return True


def release(tx: Tx, webhook_id: str, owner: str) -> None:
    tx.conn.execute(
        w.update()
        .where(w.c.id == webhook_id, w.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


def next_due(tx: Tx) -> int | None:
    """When the soonest pending delivery of an active webhook is due (ms), or None."""
    q = (
        sa.select(sa.func.min(d.c.next_attempt_at))
        .join(w, w.c.id == d.c.webhook_id)
        .where(d.c.status == "pending", w.c.active.is_(True))
    )
    value = tx.conn.execute(q).scalar_one()
    return int(value) if value is not None else None
