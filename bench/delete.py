"""How long ``DELETE /v1/sessions/{id}`` takes for a large session.

Seeds a session with ``--messages`` assistant messages (1,000 per transaction, through
``sessiond.versions.appends.append``: each also writes its event) and ``--checkpoints``
checkpoints, then times the DELETE request (in-process ``TestClient``, so no network).
Repeated ``--repeat`` times (the median and the worst shown), then times the background
purge of all of them when the server has one (``sessions.purge``).

Run on demand, never by the test suite::

    PYTHONPATH=src:. .venv/bin/python bench/delete.py                 # SQLite, 10,000 + 100
    PYTHONPATH=src:. .venv/bin/python bench/delete.py --postgres      # a private cluster
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _seed(tx: Any, limits: Any, account_id: str, session_id: str, n: int) -> None:
    from sessiond.conversation.models import MessageCreate
    from sessiond.versions import appends

    body = MessageCreate(role="assistant", content="x" * 200)
    for _ in range(n):
        appends.append(tx, limits, account_id, session_id, body)


def run(
    database_url: str, data_dir: Path, messages: int, checkpoints: int, repeat: int
) -> dict[str, float]:
    from fastapi.testclient import TestClient
    from tests.support.api import Api, make_tenant

    from sessiond.app import create_app
    from sessiond.settings import Settings
    from sessiond.versions import checkpoints as cps

    settings = Settings(data_dir=data_dir, database_url=database_url, access_log=False)
    settings = settings.model_copy(update={"sweep_interval_seconds": None})
    with TestClient(create_app(settings)) as client:
        tenant = make_tenant(client, "bench")
        api = Api(client, tenant.admin)
        db = client.app.state.ctx.db  # type: ignore[attr-defined]
        warm = api.session(title="warm-up")["id"]  # the first DELETE pays for imports
        api.delete(f"/v1/sessions/{warm}", expect=204)
        times = []
        for _ in range(repeat):
            sid = api.session(title="big")["id"]
            for done in range(0, messages, 1000):
                n = min(1000, messages - done)
                db.write_sync(_seed, settings.limits, tenant.account_id, sid, n)
            for i in range(checkpoints):
                db.write_sync(cps.create, tenant.account_id, sid, label=f"cp{i}", description=None)
            start = time.perf_counter()
            api.delete(f"/v1/sessions/{sid}", expect=204)
            times.append((time.perf_counter() - start) * 1000)
        out = {"delete_ms_median": statistics.median(times), "delete_ms_max": max(times)}
        try:
            from sessiond.sessions import purge
        except ImportError:
            return out
        start = time.perf_counter()
        steps = 0
        while db.write_sync(purge.purge_step, batch=settings.tuning.purge_batch):
            steps += 1
        out["purge_ms_all"] = (time.perf_counter() - start) * 1000
        out["purge_steps"] = steps
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--checkpoints", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3, help="sessions deleted (median shown)")
    p.add_argument("--postgres", action="store_true", help="a private PostgreSQL cluster")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            from tests.support.postgres import PostgresCluster

            cluster = PostgresCluster()
            cluster.start()
            try:
                cluster.create_database("bench")
                url = cluster.url("bench")
                result = run(url, Path(tmp), args.messages, args.checkpoints, args.repeat)
            finally:
                cluster.stop()
        else:
            url = f"sqlite:///{tmp}/sessiond.db"
            result = run(url, Path(tmp), args.messages, args.checkpoints, args.repeat)
    backend = "postgresql" if args.postgres else "sqlite"
    figures = ", ".join(f"{k} {v:.1f}" for k, v in result.items())
    print(f"{backend}: {args.messages} messages, {args.checkpoints} checkpoints: {figures}")


if __name__ == "__main__":
    main()
