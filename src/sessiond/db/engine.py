"""Engine construction for both dialects, with the SQLite settings the executor relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool, QueuePool

from sessiond.jsontext import dumps as _dumps


def make_engine(url: str, *, role: str = "rw", pool_size: int = 5) -> sa.Engine:
    """Create an engine.

    ``role`` matters on SQLite only: ``"writer"`` begins every transaction with
    ``BEGIN IMMEDIATE`` (so a write never fails half-way with "database is locked"),
    ``"reader"`` opens connections with ``query_only``. Both use WAL and
    ``synchronous=NORMAL``.
    """
    if url.startswith("sqlite"):
        return _sqlite_engine(url, role=role, pool_size=pool_size)
    return sa.create_engine(
        url,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=4,
        pool_pre_ping=True,
        json_serializer=_dumps,
    )


def _sqlite_engine(url: str, *, role: str, pool_size: int) -> sa.Engine:
    db_path = sa.make_url(url).database
    if db_path and db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        poolclass=QueuePool if role != "cli" else NullPool,
        **({"pool_size": pool_size, "max_overflow": 0} if role != "cli" else {}),
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=_dumps,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: we emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA temp_store=MEMORY")
        # Page cache per connection (KiB): a worker has ~5 connections, so 32 MB each
        # grew a worker's RSS by up to 160 MB; the OS caches the file for all of them.
        cur.execute(f"PRAGMA cache_size=-{8000 if role == 'reader' else 16000}")
        if role == "reader":
            cur.execute("PRAGMA query_only=1")
        cur.close()

    begin_sql = "BEGIN" if role == "reader" else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin_sql)

    return engine
