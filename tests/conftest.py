"""Fixtures: every storage-touching test runs on SQLite and on a real PostgreSQL server.

``backend`` is parametrized over both; each PostgreSQL test gets its own fresh database on a
private cluster started once per run (tests/support/postgres.py). When no PostgreSQL server
binaries exist the PostgreSQL half is skipped with a message — except under CI (``CI=true``),
where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.auth import service as auth
from sessiond.db import migrate
from sessiond.db.engine import make_engine
from sessiond.settings import Settings
from tests.support.agents import write_agents_file
from tests.support.api import Api, Tenant, make_tenant
from tests.support.clock import Clock
from tests.support.postgres import PostgresCluster, find_pg_bindir

BACKENDS = ["sqlite", "postgresql"]
# How often the background sweep runs in a test marked ``@pytest.mark.sweeper``; every
# other test runs without it, so nothing races the test's own reads and writes.
TEST_SWEEP_SECONDS = 0.05


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sweeper: run the app's background sweep (off in every other test)"
    )
    config.addinivalue_line(
        "markers", "settings(**fields): Settings fields of the ``client`` app for this test"
    )


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster | None]:
    external = os.environ.get("SESSIOND_TEST_PG_URL")
    if not external and find_pg_bindir() is None:
        yield None
        return
    # A terminated test run (CI timeout, kill) still stops its private cluster.
    signal.signal(signal.SIGTERM, _terminate)
    cluster = PostgresCluster(external_url=external)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _pg_or_skip(request: pytest.FixtureRequest) -> PostgresCluster:
    cluster: PostgresCluster | None = request.getfixturevalue("pg_cluster")
    if cluster is None:
        message = (
            "PostgreSQL server binaries not found (apt-get install postgresql, "
            "or set SESSIOND_TEST_PG_URL): PostgreSQL tests skipped"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return cluster


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per run; each test starts from a copy (migrating a
    fresh database for every test was most of the suite's time)."""
    path = tmp_path_factory.mktemp("template") / "sessiond.db"
    engine = make_engine(f"sqlite:///{path}", role="cli")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_pool() -> list[str]:
    """Migrated PostgreSQL databases free for the next test. A test takes one (or a new
    one is made and migrated), and gives it back emptied: creating a database costs
    ~0.2 s on PostgreSQL, emptying one a few milliseconds."""
    return []


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, empty database for this test alone."""
    if backend == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "sessiond.db")
        yield f"sqlite:///{tmp_path / 'sessiond.db'}"
        return
    cluster = _pg_or_skip(request)
    pool: list[str] = request.getfixturevalue("pg_pool")
    if pool:
        name = pool.pop()
    else:
        name = f"t_{uuid.uuid4().hex[:16]}"
        cluster.create_database(name)
        engine = make_engine(cluster.url(name), role="cli")
        migrate.upgrade(engine)
        engine.dispose()
    yield cluster.url(name)
    try:
        cluster.reset_database(name)
    except Exception:
        cluster.drop_database(name)  # never hand on a database in an unknown state
        raise
    pool.append(name)


@pytest.fixture
def empty_database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An empty database (no schema), for migration tests."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    cluster = _pg_or_skip(request)
    name = f"t_{uuid.uuid4().hex[:16]}"
    cluster.create_database(name)
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def clock() -> Clock:
    """The clock of ``client``'s app: ``clock.advance(seconds)`` instead of sleeping."""
    return Clock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Test settings. The background sweep is off (no test races it) unless the test is
    marked ``@pytest.mark.sweeper``; ``@pytest.mark.settings(field=value, ...)`` sets
    fields (the closest marker wins)."""
    sweeping = request.node.get_closest_marker("sweeper") is not None
    write_agents_file(tmp_path)
    marker = request.node.get_closest_marker("settings")
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        access_log=False,
        sweep_interval_seconds=TEST_SWEEP_SECONDS if sweeping else None,
        event_poll_seconds=0.2,
        heartbeat_seconds=1.0,
        pg_workers=8,
        sqlite_readers=2,
        stream_flush_ms=20,
        cancel_grace_seconds=2.0,
        # Generous: a loaded 2-core machine starts a Python agent in bwrap in ~0.5-3 s.
        agent_start_timeout_seconds=20.0,
        # No embedding model in every test's app (tests/test_memory.py asks for one).
        **{"embedder": "none", **(marker.kwargs if marker else {})},
    )


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    """The app on ``settings``, its transactions timed by ``clock``."""
    with TestClient(create_app(settings, clock=clock.now), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def tenant(client: TestClient) -> Tenant:
    """The first account with an admin, a write and a read key."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    secret = ctx.db.write_sync(auth.bootstrap)
    assert secret is not None
    return make_tenant(client, "default", admin_secret=secret)


@pytest.fixture
def other(client: TestClient, tenant: Tenant) -> Tenant:
    """A second account: its resources must be invisible to ``tenant`` and vice versa."""
    return make_tenant(client, "other")


@pytest.fixture
def api(client: TestClient, tenant: Tenant) -> Api:
    """The first account's write key."""
    return Api(client, tenant.write)
