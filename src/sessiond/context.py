"""What the routes need from the running app, built once by ``create_app``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sessiond.auth.principal import Principal
from sessiond.db.executor import Database
from sessiond.events.bus import EventBus
from sessiond.http.metrics import Metrics
from sessiond.settings import Settings


@dataclass
class AuthCache:
    """Short-lived cache of key lookups (hash → principal). Revocations on this instance
    clear it at once; other instances see a revocation within ``ttl`` seconds."""

    ttl: float
    entries: dict[str, tuple[Principal | None, float]] = field(default_factory=dict)

    def get(self, secret_hash: str) -> tuple[bool, Principal | None]:
        hit = self.entries.get(secret_hash)
        if hit is None or hit[1] < time.monotonic():
            return False, None
        return True, hit[0]

    def put(self, secret_hash: str, principal: Principal | None) -> None:
        if len(self.entries) > 10_000:
            self.entries.clear()
        self.entries[secret_hash] = (principal, time.monotonic() + self.ttl)

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class AppContext:
    settings: Settings
    db: Database
    bus: EventBus
    metrics: Metrics
    auth_cache: AuthCache
