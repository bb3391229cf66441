"""A real HTTP server on loopback that records what webhooks POST to it.

``Receiver`` runs a ``ThreadingHTTPServer`` in a thread on a free port. Each request is
recorded (headers, body, when) and answered by ``behaviour(n, request)``: the status code
to send, or a number of seconds to hang first (``("hang", seconds)``). By default every
request gets 200.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


Answer = int | tuple[str, float]


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    behaviour: Callable[[int, Received], Answer] = lambda n, r: 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        """The first ``n`` requests, once that many came (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests[:n])
            assert time.monotonic() < deadline, f"{len(self.requests)} of {n} requests came"
            time.sleep(0.02)

    def event_ids(self) -> list[int]:
        with self.lock:
            return [int(r.headers["sessiond-event-id"]) for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            got = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
            )
            with receiver.lock:
                receiver.requests.append(got)
                n = len(receiver.requests)
            answer = receiver.behaviour(n, got)
            if isinstance(answer, tuple):
                receiver.stopping.wait(answer[1])
                answer = 200
            payload = b"ok" if answer < 300 else b"receiver says no"
            try:
                self.send_response(answer)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the sender gave up (timed out) first

    return Handler


@contextmanager
def receiver(port: int = 0) -> Iterator[Receiver]:
    """A running receiver until the block ends (``port`` 0: a free one)."""
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
