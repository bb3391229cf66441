"""Periodic background work: TTL expiry sweep, expired cache entries, idempotency purge.

Safe with many instances: the sweep claims rows with ``SKIP LOCKED`` on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging

from sessiond import idempotency
from sessiond.cache import service as cache
from sessiond.db.executor import Database
from sessiond.sessions import service as sessions

log = logging.getLogger("sessiond.background")


async def sweeper(db: Database, *, interval: float, idempotency_ttl: int) -> None:
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        ticks += 1
        try:
            while await db.write(sessions.sweep_expired) >= 500:
                pass
            while await db.write(cache.purge_expired) >= 1000:
                pass
            if ticks % 60 == 1:
                await db.write(idempotency.purge_expired, idempotency_ttl)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background sweep failed; will retry")
