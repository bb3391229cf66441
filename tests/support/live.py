"""A real uvicorn server on loopback, in a thread, for streaming and concurrency tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from sessiond.app import create_app
from sessiond.settings import Settings


@dataclass
class Live:
    app: FastAPI
    url: str


@contextmanager
def live_server(settings: Settings) -> Iterator[Live]:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, timeout_graceful_shutdown=1, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Yield ``{"id", "event", "data"}`` per event and ``{"comment": text}`` per comment line."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
                event = {}
            continue
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            event["data"] = event["data"] + "\n" + value if "data" in event else value
        elif field in ("id", "event"):
            event[field] = value
