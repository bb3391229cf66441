"""The database executor: services are sync functions run inside one transaction.

Async routes ``await db.read(fn, ...)`` / ``await db.write(fn, ...)``; ``fn(tx, ...)``
runs on a worker thread inside a transaction and may call ``tx.emit(...)`` to record
events. Events are inserted in the same transaction and announced (``on_commit``) only
after it commits.

* SQLite: one writer thread (``BEGIN IMMEDIATE``) that groups queued writes into one
  transaction with a savepoint each (a failing write rolls back alone), plus a pool of
  reader threads. Several processes on one database file (``serve --workers N``, the
  CLI) take turns through an exclusive ``flock`` on ``<database>-writer`` held from
  BEGIN to COMMIT: a waiting writer is woken the moment the lock is free (SQLite's own
  busy handler sleeps and polls; its ``busy_timeout`` stays as the safety net for
  writers that do not take the lock), so never "database is locked".
* PostgreSQL: a pool of worker threads, one pooled connection each. Event rows are
  inserted under a transaction-level advisory lock held until commit, so event ids
  become visible in id order and a reader that saw id N never misses an id below N.

Every transaction's ``now`` comes from the database's ``clock`` (the wall clock unless
one is injected): TTLs, expiry and timestamps are all read from it, so a test can move
time forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from sessiond import jsontext
from sessiond.db import tables as t
from sessiond.db.engine import make_engine
from sessiond.ids import now_ms

log = logging.getLogger("sessiond.db")

P = ParamSpec("P")
R = TypeVar("R")

# Arbitrary constant: the advisory lock that orders event commits on PostgreSQL.
EVENTS_LOCK_KEY = 0x5E55_10D0
NOTIFY_CHANNEL = "sessiond_events"
MAX_GROUP = 64
_SQLITE_EVENT_INSERT = (
    "INSERT INTO events (account_id, workspace_id, session_id, type, data, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
)


@dataclass
class Tx:
    """One transaction. ``now`` is fixed for the whole transaction."""

    conn: sa.Connection
    dialect: str
    now: int = field(default_factory=now_ms)
    events: list[dict[str, Any]] = field(default_factory=list)
    readonly: bool = False
    _flushed: int = 0
    _ordered: bool = False

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def emit(
        self,
        account_id: str,
        type: str,
        data: Any,
        *,
        session_id: str | None = None,
        workspace_id: str | None = None,
    ) -> None:
        """Record an event; it is written with this transaction and published after commit."""
        if self.readonly:
            raise RuntimeError("emit() in a read-only transaction")
        self.events.append(
            {
                "account_id": account_id,
                "workspace_id": workspace_id,
                "session_id": session_id,
                "type": type,
                "data": data,
                "created_at": self.now,
            }
        )

    def order_commits(self) -> None:
        """From here to commit, values this transaction takes from a sequence become
        visible in sequence order: a reader that saw N never misses a smaller one later.
        SQLite has one writer, so it holds already; PostgreSQL takes the events advisory
        lock (held until commit; taking it twice is harmless)."""
        if self.is_postgres and not self._ordered:
            self.conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": EVENTS_LOCK_KEY})
            self._ordered = True

    def flush_events(self) -> None:
        """Insert the events not inserted yet, setting their ``id``.

        On PostgreSQL the first flush takes the events advisory lock, held until commit,
        so ids commit in id order (see module docstring). Calling it twice is harmless.
        """
        pending = self.events[self._flushed :]
        if not pending:
            return
        if self.is_postgres and self._flushed == 0:
            self.order_commits()
            self.conn.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))
        if self.is_postgres:
            insert = t.events.insert().returning(t.events.c.id)
            for event in pending:
                event["id"] = self.conn.execute(insert, event).scalar_one()
        else:
            # Straight on the sqlite3 connection of this transaction: every write has at
            # least one event, and SQLAlchemy's statement machinery cost ~5x the insert.
            # The JSON text is the engine's own serializer's (``jsontext.dumps``).
            raw = self.conn.connection.driver_connection
            assert raw is not None
            for event in pending:
                row = raw.execute(
                    _SQLITE_EVENT_INSERT,
                    (
                        event["account_id"],
                        event["workspace_id"],
                        event["session_id"],
                        event["type"],
                        jsontext.dumps(event["data"]),
                        event["created_at"],
                    ),
                ).fetchone()
                event["id"] = row[0]
        self._flushed = len(self.events)


TxFn = Callable[Concatenate[Tx, P], R]
# Integer milliseconds since the epoch, like ``sessiond.ids.now_ms``.
Clock = Callable[[], int]


@dataclass
class _Job:
    fn: Callable[[Tx], Any]
    future: cf.Future[Any]


class Database:
    """Runs service functions in transactions on worker threads. Start with ``start()``."""

    def __init__(
        self, url: str, *, readers: int = 4, pg_workers: int = 16, clock: Clock = now_ms
    ) -> None:
        self.url = url
        # The ``now`` of every transaction run here.
        self.clock = clock
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        # Called (on the writing thread) after each commit that wrote events, with those
        # events (ids set), oldest first.
        self.on_commit: Callable[[list[dict[str, Any]]], None] | None = None
        self._readers = readers
        self._pg_workers = pg_workers
        self._started = False
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._point_conn: sa.Connection | None = None  # read_point's (the loop's thread)
        self._lock_fd: int | None = None  # the cross-process writer lock (SQLite file)
        self.sqlite_path: str | None = None  # the database file (SQLite), None in memory
        if self.dialect == "sqlite":
            path = sa.make_url(url).database
            if path and path != ":memory:" and not path.startswith("file:"):
                self.sqlite_path = os.path.abspath(path)
            self.write_engine = make_engine(url, role="writer", pool_size=1)
            # One more than the reader threads: read_point keeps one for the loop thread.
            self.read_engine = make_engine(url, role="reader", pool_size=readers + 1)
            self._pool = cf.ThreadPoolExecutor(readers, thread_name_prefix="db-read")
        else:
            self.write_engine = make_engine(url, pool_size=pg_workers)
            self.read_engine = self.write_engine
            self._pool = cf.ThreadPoolExecutor(pg_workers, thread_name_prefix="db")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.dialect == "sqlite":
            if self.sqlite_path is not None:
                os.makedirs(os.path.dirname(self.sqlite_path), exist_ok=True)
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                self._lock_fd = os.open(self.sqlite_path + "-writer", flags, 0o600)
            self._writer = threading.Thread(target=self._writer_loop, name="db-write", daemon=True)
            self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        self._pool.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._point_conn is not None:
            self._point_conn.close()
            self._point_conn = None
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
        self._started = False

    # -- async API -------------------------------------------------------------------------

    async def read(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(tx, ...)`` in a read-only transaction on a reader thread."""
        return await asyncio.wrap_future(self._pool.submit(self._run_read, fn, args, kwargs))

    async def read_point(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``read`` for a bounded read: a point lookup or one keyset page of an index (no
        scan). On SQLite it runs right here, on the event loop's thread, on a connection
        of its own: the lookup costs tens of µs (a page of 100 sessions ~1.8 ms), the hop
        to a reader thread and back (a future, a wake-up, two GIL hand-offs) ~150-300 µs
        on this VM, and under load the reader thread fights the loop for the GIL. A WAL
        reader never waits for the writer. On PostgreSQL (a network round trip) it is
        ``read``."""
        if self.dialect != "sqlite":
            return await self.read(fn, *args, **kwargs)
        conn = self._point_conn
        if conn is None:
            conn = self._point_conn = self.read_engine.connect()
        with conn.begin():
            return fn(Tx(conn, self.dialect, now=self.clock(), readonly=True), *args, **kwargs)

    async def write(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(tx, ...)`` in a write transaction; returns its result after commit."""
        return await asyncio.wrap_future(self.submit_write(lambda tx: fn(tx, *args, **kwargs)))

    # -- sync API (CLI, background threads) ------------------------------------------------

    def read_sync(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return self._pool.submit(self._run_read, fn, args, kwargs).result()

    def write_sync(self, fn: TxFn[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return self.submit_write(lambda tx: fn(tx, *args, **kwargs)).result()  # type: ignore[no-any-return]

    def submit_write(self, fn: Callable[[Tx], Any]) -> cf.Future[Any]:
        if not self._started:
            raise RuntimeError("Database.start() was not called")
        future: cf.Future[Any] = cf.Future()
        if self.dialect == "sqlite":
            self._queue.put(_Job(fn, future))
        else:
            return self._pool.submit(self._run_pg_write, fn)
        return future

    # -- internals -------------------------------------------------------------------------

    def _run_read(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        with self.read_engine.connect() as conn, conn.begin():
            return fn(Tx(conn, self.dialect, now=self.clock(), readonly=True), *args, **kwargs)

    def _notify(self, events: list[dict[str, Any]]) -> None:
        if self.on_commit is not None:
            try:
                self.on_commit(events)
            except Exception:  # pragma: no cover - a broken listener must not fail writes
                log.exception("on_commit listener failed")

    def _run_pg_write(self, fn: Callable[[Tx], R]) -> R:
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.write_engine.connect() as conn:
                    with conn.begin():
                        tx = Tx(conn, self.dialect, now=self.clock())
                        result = fn(tx)
                        tx.flush_events()
                    if tx.events:
                        self._notify(tx.events)
                    return result
            except DBAPIError as exc:
                # Serialization failures and deadlocks are safe to retry: nothing committed.
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate in ("40001", "40P01") and attempt < 5:
                    time.sleep(0.005 * attempt)
                    continue
                raise

    def _writer_loop(self) -> None:
        conn = self.write_engine.connect()
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while len(batch) < MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """Held around each SQLite write transaction (see the module docstring)."""
        fd = self._lock_fd
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _run_batch(self, conn: sa.Connection, batch: list[_Job]) -> None:
        """One transaction for the whole batch; a savepoint per job when there are several.

        A job whose caller already gave up (its future was cancelled, e.g. the request was
        cancelled) is skipped; the others are marked running first, so they can no longer
        be cancelled and setting their result is always valid.
        """
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        outcomes: list[tuple[bool, Any]] = []
        emitted: list[dict[str, Any]] = []
        raw = conn.connection.driver_connection  # the sqlite3 connection
        assert raw is not None
        try:
            with self._writer_lock(), conn.begin():
                for job in batch:
                    tx = Tx(conn, self.dialect, now=self.clock())
                    if len(batch) == 1:
                        result = job.fn(tx)
                        tx.flush_events()
                        outcomes.append((True, result))
                        emitted.extend(tx.events)
                        continue
                    # The savepoint straight on the driver's connection: SQLAlchemy's
                    # begin_nested() cost a sixth of the writer's time under load.
                    raw.execute("SAVEPOINT job")
                    try:
                        result = job.fn(tx)
                        tx.flush_events()
                    except BaseException as exc:
                        raw.execute("ROLLBACK TO job")
                        raw.execute("RELEASE job")
                        outcomes.append((False, exc))
                    else:
                        raw.execute("RELEASE job")
                        outcomes.append((True, result))
                        emitted.extend(tx.events)
        except BaseException as exc:
            if isinstance(exc, OperationalError):
                log.error("write transaction failed: %s", exc)
            # Nothing committed: every job of the batch fails with this error unless it
            # already failed with its own (the single-job case lands here too).
            for i, job in enumerate(batch):
                if i < len(outcomes) and not outcomes[i][0]:
                    job.future.set_exception(outcomes[i][1])
                else:
                    job.future.set_exception(exc)
            return
        if emitted:
            self._notify(emitted)
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
