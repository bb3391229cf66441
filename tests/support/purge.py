"""Run the background purge of deleted sessions now, through the app's database."""

from __future__ import annotations

from typing import Any

from sessiond.sessions.purge import purge_step


def purge(client: Any, batch: int = 1000, steps: int | None = None) -> int:
    """Purge steps as the sweeper runs them (all of them, or ``steps``); how many ran.
    ``client`` is a TestClient (anything with ``.app.state.ctx.db``)."""
    db = client.app.state.ctx.db
    ran = 0
    while (steps is None or ran < steps) and db.write_sync(purge_step, batch=batch):
        ran += 1
    return ran
