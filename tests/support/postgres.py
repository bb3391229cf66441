"""A private, throwaway PostgreSQL server for the test suite.

The test suite must not depend on a PostgreSQL server someone else set up, and must never touch
one that holds real data. :class:`PostgresCluster` therefore creates a brand-new cluster in a
temporary directory (``initdb``), starts it on a free loopback port with durability switched off
(``fsync=off`` and friends: fast, and nothing in it is worth keeping), hands out fresh databases
on request, and throws the whole directory away on :meth:`PostgresCluster.stop`.

Only the standard library and psycopg 3 are used, so this module can be imported by
``conftest.py`` before anything of the application is.

Typical use (e.g. from a session-scoped fixture)::

    cluster = PostgresCluster()  # or PostgresCluster(external_url=...)
    cluster.start()
    try:
        cluster.create_database("t_abc")
        engine = create_engine(cluster.url("t_abc"))
        ...
        cluster.drop_database("t_abc")
    finally:
        cluster.stop()

Running as root: ``initdb`` and ``postgres`` refuse to run as root, so when the effective uid is
0 the temporary directory is handed to the ``postgres`` system user (created by Debian's
``postgresql`` package) and every server binary is run through
``su postgres -s /bin/sh -c '...'``.

An existing server can be used instead by passing ``external_url``: a SQLAlchemy URL
(``postgresql+psycopg://user:password@host:port/postgres``) to that server's maintenance
database, as a role allowed to create databases. Then :meth:`PostgresCluster.start` and
:meth:`PostgresCluster.stop` start and stop nothing; databases are created and dropped on that
server.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = ["PostgresCluster", "find_pg_bindir"]

_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
_HOST = "127.0.0.1"
_SUPERUSER = "postgres"
_OS_USER_WHEN_ROOT = "postgres"
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 40


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``: numeric parts of the version."""
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _has_server_binaries(bindir: str) -> bool:
    return all(os.access(os.path.join(bindir, name), os.X_OK) for name in _SERVER_BINARIES)


def find_pg_bindir() -> str | None:
    """Return the directory holding the PostgreSQL server binaries, or ``None``.

    The server binaries are ``initdb``, ``pg_ctl`` and ``postgres``; on Debian they are not on
    ``PATH``. Tried in order:

    1. ``pg_config --bindir``, if that directory contains ``initdb`` (and the other two);
    2. ``/usr/lib/postgresql/*/bin``, highest version first;
    3. the directory of ``initdb`` found on ``PATH``.
    """
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            result = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            result = None
        if result is not None and result.returncode == 0:
            bindir = result.stdout.strip()
            if bindir and _has_server_binaries(bindir):
                return bindir

    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_server_binaries(bindir):
            return bindir

    initdb = shutil.which("initdb")
    if initdb is not None:
        bindir = os.path.dirname(os.path.realpath(initdb))
        if _has_server_binaries(bindir):
            return bindir
        return os.path.dirname(initdb)
    return None


def _free_port() -> int:
    """Return a TCP port on the loopback interface that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _to_libpq_url(sqlalchemy_url: str, dbname: str | None = None) -> str:
    """Turn ``postgresql+psycopg://...`` into a libpq URL, optionally with another database."""
    parts = urlsplit(sqlalchemy_url)
    scheme = parts.scheme.split("+", 1)[0]
    path = parts.path if dbname is None else "/" + dbname
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


class PostgresCluster:
    """A private PostgreSQL cluster (or an external server) that hands out fresh databases.

    Contract:

    * :meth:`start` makes the server usable; it raises :class:`RuntimeError` (with the tail of
      the server log) if the cluster cannot be created or started, after cleaning up.
    * :meth:`stop` stops the server and deletes every file of the cluster. It never raises, may
      be called any number of times, and is also registered with :mod:`atexit` while the
      cluster runs, so an interrupted test run leaves no ``postgres`` process behind.
    * :meth:`url` gives a SQLAlchemy URL for one database; :meth:`create_database` and
      :meth:`drop_database` manage databases (dropping disconnects remaining sessions).
    * Nothing in the cluster is durable: it runs with ``fsync=off``.

    With ``external_url`` no cluster is created; :meth:`start` only checks that the server
    answers and :meth:`stop` does nothing.

    The object is also a context manager (``with PostgresCluster() as pg: ...``).
    """

    def __init__(self, bindir: str | None = None, external_url: str | None = None) -> None:
        """Prepare (but do not start) a cluster.

        :param bindir: directory of ``initdb``/``pg_ctl``/``postgres``; found with
            :func:`find_pg_bindir` when omitted.
        :param external_url: SQLAlchemy URL to an existing server's maintenance database; when
            given, that server is used and no cluster is created.
        """
        self._bindir = bindir
        self._external_url = external_url
        self._tmpdir: Path | None = None
        self._port: int | None = None
        self._running = False

    # ----------------------------------------------------------------- public properties

    @property
    def external(self) -> bool:
        """True when an existing server (``external_url``) is used instead of a private one."""
        return self._external_url is not None

    @property
    def host(self) -> str:
        """Host name of the server (``127.0.0.1`` for the private cluster)."""
        if self._external_url is not None:
            return urlsplit(self._external_url).hostname or "localhost"
        return _HOST

    @property
    def port(self) -> int:
        """TCP port of the server. For the private cluster, only known after :meth:`start`."""
        if self._external_url is not None:
            return urlsplit(self._external_url).port or 5432
        if self._port is None:
            raise RuntimeError("PostgresCluster is not started")
        return self._port

    @property
    def data_dir(self) -> Path | None:
        """Data directory of the private cluster while it exists, else ``None``."""
        return None if self._tmpdir is None else self._tmpdir / "data"

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (``postgresql+psycopg://...``) of database ``dbname`` on this server."""
        if self._external_url is not None:
            parts = urlsplit(self._external_url)
            return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))
        return f"postgresql+psycopg://{_SUPERUSER}@{_HOST}:{self.port}/{dbname}"

    # ----------------------------------------------------------------- databases

    def create_database(self, name: str, template: str | None = None) -> None:
        """Create database ``name`` (an error if it exists): empty, or a copy of
        ``template`` (which must have no open connections)."""
        with self._admin_connection() as conn:
            if template is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            else:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting any sessions still using it."""
        with self._admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def reset_database(self, name: str) -> None:
        """Empty every table of ``name`` but ``alembic_version`` (and restart identities),
        after disconnecting whatever still uses it: a migrated database ready for reuse."""
        with self._admin_connection() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        url = self.url(name)
        with psycopg.connect(_to_libpq_url(url), autocommit=True) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ]
            if tables:
                names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))

    def _admin_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database ``postgres``."""
        if self._external_url is not None:
            return psycopg.connect(_to_libpq_url(self._external_url), autocommit=True)
        return psycopg.connect(
            host=_HOST,
            port=self.port,
            user=_SUPERUSER,
            dbname="postgres",
            sslmode="disable",
            connect_timeout=10,
            autocommit=True,
        )

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create and start the private cluster (or check the external server answers).

        Raises :class:`RuntimeError` with details (command output, server log tail) on failure;
        whatever was created by then has been removed again.
        """
        if self._running:
            return
        if self._external_url is not None:
            with self._admin_connection() as conn:
                conn.execute("SELECT 1")
            self._running = True
            return

        bindir = self._bindir or find_pg_bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
                "install them (Debian: apt-get install postgresql) or pass external_url"
            )
        self._bindir = bindir
        atexit.register(self.stop)
        try:
            self._start_private()
        except BaseException:
            self.stop()
            raise
        self._running = True

    def _start_private(self) -> None:
        as_root = os.geteuid() == 0
        # As root, keep the cluster out of a TMPDIR the postgres user might not be able to reach.
        base = "/tmp" if as_root and os.path.isdir("/tmp") else None
        tmpdir = Path(tempfile.mkdtemp(prefix="sessiond-pg-", dir=base))
        self._tmpdir = tmpdir
        if as_root:
            try:
                user = pwd.getpwnam(_OS_USER_WHEN_ROOT)
            except KeyError:
                raise RuntimeError(
                    "running as root, but there is no 'postgres' system user to run the "
                    "PostgreSQL server as"
                ) from None
            os.chown(tmpdir, user.pw_uid, user.pw_gid)

        data = tmpdir / "data"
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(data),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            timeout=120,
            what="initdb",
        )

        log = tmpdir / "log"
        last_error = ""
        for _attempt in range(_START_ATTEMPTS):
            port = _free_port()
            options = shlex.join(
                [
                    "-c",
                    f"listen_addresses={_HOST}",
                    "-p",
                    str(port),
                    "-k",
                    str(tmpdir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=64MB",
                ]
            )
            cmd = [
                self._bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "start",
            ]
            result = self._exec(cmd, timeout=90)
            if result.returncode == 0:
                self._port = port
                return
            last_error = self._describe_failure("pg_ctl start", result)
            # Only a lost race for the port is worth another try.
            if "could not bind" not in last_error and "already in use" not in last_error:
                break
            self._pg_ctl_stop()
        raise RuntimeError(last_error)

    def stop(self) -> None:
        """Stop the server and delete the cluster's files. Never raises; safe to call twice."""
        atexit.unregister(self.stop)
        self._running = False
        if self._external_url is not None:
            return
        tmpdir = self._tmpdir
        if tmpdir is None:
            return
        with contextlib.suppress(Exception):
            self._pg_ctl_stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
        self._tmpdir = None
        self._port = None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- helpers

    def _pg_ctl_stop(self) -> None:
        """Stop the postmaster if one is running in our data directory (immediate mode)."""
        data = self.data_dir
        if data is None or self._bindir is None or not (data / "postmaster.pid").exists():
            return
        self._exec([self._bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], 60)

    def _bin(self, name: str) -> str:
        assert self._bindir is not None
        return os.path.join(self._bindir, name)

    def _exec(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the ``postgres`` user when we are root."""
        if os.geteuid() == 0:
            cmd = ["su", _OS_USER_WHEN_ROOT, "-s", "/bin/sh", "-c", shlex.join(cmd)]
        try:
            return subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
                # A directory the postgres user can enter (the caller's cwd may be /root).
                cwd=self._tmpdir,
                env={**os.environ, "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"timed out after {timeout} s: {shlex.join(cmd)}") from exc

    def _run(self, cmd: list[str], timeout: float, what: str) -> None:
        result = self._exec(cmd, timeout)
        if result.returncode != 0:
            raise RuntimeError(self._describe_failure(what, result))

    def _describe_failure(self, what: str, result: subprocess.CompletedProcess[str]) -> str:
        args = result.args if isinstance(result.args, str) else shlex.join(result.args)
        lines = [
            f"{what} failed with exit code {result.returncode}: {args}",
            f"stdout:\n{result.stdout.strip()}",
            f"stderr:\n{result.stderr.strip()}",
        ]
        log = None if self._tmpdir is None else self._tmpdir / "log"
        if log is not None and log.exists():
            tail = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
            lines.append(f"server log ({log}, last {len(tail)} lines):\n" + "\n".join(tail))
        return "\n".join(lines)
