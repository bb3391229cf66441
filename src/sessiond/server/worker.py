"""One worker process: ``python -m sessiond.server.worker <supervisor pid>``, its
settings (JSON, ``worker`` and ``port`` set) on stdin. It serves the whole app on its own
SO_REUSEPORT socket and dies with its supervisor."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Be killed (SIGKILL) when the supervisor dies, however it dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def main() -> None:
    _die_with(int(sys.argv[1]))
    from sessiond.server.listen import reuseport_socket, serve_app
    from sessiond.settings import Settings

    settings = Settings.model_validate_json(sys.stdin.read())
    sys.stdin.close()
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s w{settings.worker} %(name)s %(message)s",
        stream=sys.stderr,
    )
    serve_app(settings, [reuseport_socket(settings.host, settings.port, listen=True)])


if __name__ == "__main__":
    main()
