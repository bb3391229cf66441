"""What the routes need from the running app, built once by ``create_app``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sessiond.agents.registry import Registry
from sessiond.agents.runner import Runner
from sessiond.auth.principal import Principal
from sessiond.db.executor import Database
from sessiond.events.bus import EventBus
from sessiond.http.metrics import Metrics
from sessiond.memory.runtime import Memory
from sessiond.sandbox.manager import Sandboxes
from sessiond.settings import Settings
from sessiond.summaries.summarizer import Summarizer
from sessiond.webhooks.dispatch import Dispatcher

log = logging.getLogger("sessiond")


@dataclass
class AuthCache:
    """Short-lived in-memory cache of key lookups (secret → principal, or None for an
    unknown key). Revocations on this instance clear it at once; other instances see a
    revocation within ``ttl`` seconds."""

    ttl: float
    entries: dict[str, tuple[Principal | None, float]] = field(default_factory=dict)

    def get(self, secret: str) -> tuple[bool, Principal | None]:
        hit = self.entries.get(secret)
        if hit is None or hit[1] < time.monotonic():
            return False, None
        return True, hit[0]

    def put(self, secret: str, principal: Principal | None) -> None:
        if len(self.entries) > 10_000:
            self.entries.clear()
        self.entries[secret] = (principal, time.monotonic() + self.ttl)

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class AppContext:
    settings: Settings
    db: Database
    bus: EventBus
    metrics: Metrics
    auth_cache: AuthCache
    summarizer: Summarizer
    registry: Registry | None = None
    runner: Runner | None = None
    sandboxes: Sandboxes | None = None
    webhooks: Dispatcher | None = None
    memory: Memory | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` after the response; its failure is logged, never raised."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())
