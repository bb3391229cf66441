"""The listening sockets and uvicorn's configuration, the same for every process."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from sessiond.settings import Settings

BACKLOG = 2048


def can_share_port() -> bool:
    """Whether the kernel spreads connections over sockets bound with SO_REUSEPORT."""
    return hasattr(socket, "SO_REUSEPORT")


def reuseport_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT: every worker binds its own
    and the kernel spreads new connections across those that listen (one that is only
    bound — the supervisor's, which holds the port — receives none)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def serve_app(settings: Settings, sockets: list[socket.socket] | None = None) -> None:
    """Build the app and serve it under uvicorn until a signal stops it: on the settings'
    host and port, or on ``sockets`` already bound (a worker's SO_REUSEPORT one)."""
    from sessiond.app import create_app

    app = create_app(settings, run_migrations=False, tune_gc=True)
    uvicorn.Server(_config(app, settings)).run(sockets=sockets)


def _config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn for sessiond: our own access log and logging, no proxy headers trusted."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
        backlog=BACKLOG,
    )
