"""Periodic background work: TTL expiry sweep, the purge of deleted sessions, expired
cache entries, idempotency purge, old webhook deliveries.

One worker or instance at a time runs it: the one holding the ``sweeper`` job lease
(``db.leases``), renewed every interval. Each step is also safe on its own with many
instances (the expiry sweep claims rows with ``SKIP LOCKED`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
import time

from sessiond import idempotency
from sessiond.cache import service as cache
from sessiond.db import leases
from sessiond.db.executor import Database
from sessiond.files import gc
from sessiond.memory import service as memories
from sessiond.sessions import purge as deleted_sessions
from sessiond.sessions import service as sessions
from sessiond.settings import Tuning
from sessiond.webhooks import service as webhooks

log = logging.getLogger("sessiond.background")


async def purge_deleted(db: Database, batch: int) -> int:
    """Purge deleted sessions until none is left, yielding the writer between steps for
    at least as long as each step held it: requests' writes never queue behind a run of
    purge steps (a delete storm's purge ran back to back and doubled the deletes' p50)."""
    purged = 0
    while True:
        started = time.monotonic()
        done = await db.write(deleted_sessions.purge_step, batch=batch)
        if not done:
            return purged
        purged += done
        await asyncio.sleep(min(0.1, time.monotonic() - started))


async def sweeper(
    db: Database,
    *,
    interval: float,
    idempotency_ttl: int,
    gc_every: int,
    tuning: Tuning,
    delivery_retention_ms: int,
    owner: str,
) -> None:
    """Every ``interval`` seconds: expiry, the purge of deleted sessions (until none is
    left), cache and memory purge; every 60th: idempotency purge and
    final webhook deliveries older than ``delivery_retention_ms``;
    every ``gc_every``-th (0: never): garbage collection of unreachable git objects.
    Batch sizes come from ``tuning``; a full batch means more may wait, so it goes again.
    Runs only while ``owner`` holds the ``sweeper`` lease."""
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        try:
            if not await db.write(leases.claim, "sweeper", owner, leases.seconds_for(interval)):
                continue
            ticks += 1
            expiry, purge = tuning.expiry_batch, tuning.cache_purge_batch
            while await db.write(sessions.sweep_expired, limit=expiry) >= expiry:
                pass
            await purge_deleted(db, tuning.purge_batch)
            while await db.write(cache.purge_expired, limit=purge) >= purge:
                pass
            while await db.write(memories.purge_expired, purge) >= purge:
                pass
            if ticks % 60 == 1:
                await db.write(idempotency.purge_expired, idempotency_ttl)
                before = db.clock() - delivery_retention_ms
                while await db.write(webhooks.purge, before, purge) >= purge:
                    pass
            if gc_every and ticks % gc_every == 0:
                result = await asyncio.to_thread(gc.collect_all, db, batch=tuning.gc_delete_batch)
                if result.deleted:
                    log.info("gc: %d unreachable object(s) deleted", result.deleted)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background sweep failed; will retry")
