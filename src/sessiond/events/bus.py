"""The in-process bus: one pump reads committed events in id order and fans them out.

The database is the source of truth. After a PostgreSQL ``NOTIFY`` from another
instance, a commit by another process on the same SQLite file (``PRAGMA data_version``,
checked every ``watch_seconds`` on the loop: a few µs), or every ``poll_seconds`` as a
safety net, the pump reads
``events WHERE id > last`` and hands each event to the subscribers whose filter matches.
Because ids become visible in id order (see ``db.executor``), the pump never skips one.
A local commit hands its events over directly (no read) when their ids follow the last
one delivered without a gap; any gap (a commit by another process, an id rolled back)
falls back to the database read.

A subscriber whose queue overflows is marked *lagged*: it drops its queue and catches up
from the database, so a slow client never loses events and never blocks the pump.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from sessiond.db.executor import NOTIFY_CHANNEL, Database
from sessiond.events.store import EventFilter, fetch_after, max_id

log = logging.getLogger("sessiond.events")


class Lagged:
    """Put in a subscriber's queue when it fell behind: re-read from the database."""


LAGGED = Lagged()


class Subscription:
    def __init__(self, bus: EventBus, f: EventFilter) -> None:
        self.bus = bus
        self.filter = f
        self.queue: asyncio.Queue[dict[str, Any] | Lagged] = asyncio.Queue(bus.queue_size)
        self.lagged = False

    def offer(self, event: dict[str, Any]) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(LAGGED)

    def wake(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(LAGGED)

    async def get(self) -> dict[str, Any] | Lagged:
        item = await self.queue.get()
        if item is LAGGED:
            self.lagged = False
        return item

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(
        self,
        db: Database,
        *,
        poll_seconds: float = 1.0,
        watch_seconds: float = 0.0,
        batch: int = 1000,
        queue_size: int = 1000,
        on_publish: Callable[[int], None] | None = None,
    ) -> None:
        """``batch``: events read per query by the pump; ``queue_size``: events buffered
        per subscriber before it is marked lagged (and re-reads from the log);
        ``watch_seconds`` (SQLite file, > 0): how often to look for other processes'
        commits."""
        self.db = db
        self.poll_seconds = poll_seconds
        self.watch_seconds = watch_seconds
        self.batch = batch
        self.queue_size = queue_size
        self.on_publish = on_publish
        self.subscribers: set[Subscription] = set()
        # The SSE frames of recent events by id (committed ids never change): filled and
        # bounded by the stream routes, shared by every stream of this app.
        self.frames: dict[int, bytes] = {}
        # Called on the loop with every event of every account, committed here or by
        # another instance (the agents runner wakes on ``turn.queued``). Must not block.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.last_id = 0
        self.closed = False
        self._draining = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.last_id = await self.db.read(max_id)
        self.db.on_commit = self.wake
        self._task = asyncio.create_task(self._pump(), name="event-pump")
        if self.db.sqlite_path is not None and self.watch_seconds > 0:
            self._watcher = asyncio.create_task(self._watch(self.db.sqlite_path), name="db-watch")
        if self.db.dialect == "postgresql":
            self._listener = threading.Thread(target=self._listen_pg, name="pg-listen", daemon=True)
            self._listener.start()

    async def stop(self) -> None:
        self.closed = True
        self._stopping.set()
        self.db.on_commit = None
        for task in (self._task, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for sub in list(self.subscribers):
            sub.wake()  # streams notice ``closed`` and end

    def wake(self, events: list[dict[str, Any]] | None = None) -> None:
        """Thread-safe: new events were committed. ``events`` (this process's commit, ids
        set, oldest first) are delivered without a database read when they directly follow
        the last id delivered; otherwise (or with none) the pump reads the database."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                if events:
                    loop.call_soon_threadsafe(self._deliver, events)
                else:
                    loop.call_soon_threadsafe(self._wake.set)

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        """On the loop: publish committed events if no id can be missing before them."""
        if self._draining or events[0]["id"] != self.last_id + 1:
            self._wake.set()  # a gap (another process, a rolled-back id): read the database
            return
        published = 0
        for event in events:
            if event["id"] != self.last_id + 1:
                self._wake.set()
                break
            self._publish(event)
            published += 1
        if published and self.on_publish is not None:
            self.on_publish(published)

    def _publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            if sub.filter.matches(event):
                sub.offer(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # pragma: no cover - a broken listener must not stop the pump
                log.exception("event listener failed")
        self.last_id = event["id"]

    def subscribe(self, f: EventFilter) -> Subscription:
        sub = Subscription(self, f)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    async def _pump(self) -> None:
        # ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` can swallow a
        # cancellation that arrives as the wake-up fires, and ``stop()`` then waits forever.
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event pump failed; retrying")
                await asyncio.sleep(0.5)

    async def _drain(self) -> None:
        self._draining = True  # direct deliveries wait: they would race this read
        try:
            while True:
                batch = await self.db.read(fetch_after, self.last_id, self.batch)
                for event in batch:
                    self._publish(event)
                if batch and self.on_publish is not None:
                    self.on_publish(len(batch))
                if len(batch) < self.batch:
                    return
        finally:
            self._draining = False

    async def _watch(self, path: str) -> None:
        """Wake the pump when another connection committed events this bus has not
        delivered: ``data_version`` moves on any commit (this process's writer included),
        then the newest event id (an O(1) lookup) says whether there is anything new."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self.closed:
                await asyncio.sleep(self.watch_seconds)
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version == last:
                        continue
                    last = version
                    newest = conn.execute("SELECT max(id) FROM events").fetchone()[0]
                except sqlite3.Error as exc:  # pragma: no cover - the poll still runs
                    log.warning("data_version check failed: %s", exc)
                    continue
                if newest is not None and newest > self.last_id:
                    self._wake.set()
        finally:
            conn.close()

    def _listen_pg(self) -> None:
        """Wake the pump on NOTIFY from any instance; reconnect on failure."""
        import psycopg
        import sqlalchemy as sa

        url = sa.make_url(self.db.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except Exception as exc:  # reconnect; the periodic poll covers the gap
                if not self._stopping.is_set():
                    log.warning("LISTEN connection failed (%s); reconnecting", exc)
                    self._stopping.wait(1.0)
