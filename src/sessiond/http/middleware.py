"""One pure-ASGI middleware for every request: request id, body limit, JSON content
type, no-store, metrics and one structured access-log line.

(Starlette's ``BaseHTTPMiddleware`` costs far more per request; this is on the hot path.)
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessiond.errors import PayloadTooLarge, UnsupportedMediaType
from sessiond.http.accesslog import AccessLog
from sessiond.http.errors import error_body, internal_error
from sessiond.http.metrics import Metrics
from sessiond.ids import iso, now_ms

log = logging.getLogger("sessiond.http")

# Request ids: unique per process start, cheap to make (uuid4 per request is not).
_RID_PREFIX = f"req_{uuid.uuid4().hex[:8]}_"
_rid_counter = itertools.count(1)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        body_limit: int,
        access_log: AccessLog | None,
        raw_body_limit: int | None = None,
        is_raw: Callable[[Scope], bool] = lambda scope: False,
        own_limit: Callable[[Scope], bool] = lambda scope: False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit
        # Raw-body routes (file uploads, git pushes) may carry up to the file limit.
        self.raw_body_limit = max(body_limit, raw_body_limit or 0)
        self.access_log = access_log
        # Whether a request goes to a raw-body route (``http.routing.RawBodyRoutes``).
        self.is_raw = is_raw
        # Whether a request goes to a route that enforces its own body limit
        # (``http.routing.streamed_body``): no limit here.
        self.own_limit = own_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = completed = False
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started, completed
            if message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append(rid_header)
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        length, ctype = _body_headers(scope)
        raw = scope["method"] in BODY_METHODS and self.is_raw(scope)
        limit = self.raw_body_limit if raw else self.body_limit
        unlimited = raw and self.own_limit(scope)
        try:
            if length is not None and length > limit and not unlimited:
                await self._reject(
                    send_wrapper,
                    413,
                    PayloadTooLarge(f"request body is over the {limit}-byte limit"),
                )
            elif ctype is not None and not raw and not _json_ok(scope, ctype, length):
                mime = ctype.split(";", 1)[0].strip()
                await self._reject(
                    send_wrapper,
                    415,
                    UnsupportedMediaType(
                        f"Content-Type {mime} is not accepted here; send application/json"
                    ),
                )
            elif unlimited:
                await self.app(scope, receive, send_wrapper)
            else:
                await self.app(scope, self._limited(receive, limit), send_wrapper)
        except Exception:
            # Answer a bug with a complete 500 and keep the connection: an exception that
            # reached the server would make it drop the keep-alive connection. Only a
            # response cut off mid-body must still end the connection.
            log.exception("unhandled error (request %s)", request_id)
            if started and not completed:
                raise
            if not started:
                await self._send_error(send_wrapper, 500, internal_error(request_id))
        finally:
            self._observe(scope, status, time.perf_counter() - start, request_id)

    def _limited(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
            return message

        return wrapped

    async def _reject(
        self, send: Send, status: int, exc: PayloadTooLarge | UnsupportedMediaType
    ) -> None:
        """Refuse before reading the body: the connection closes (the body is unread)."""
        await self._send_error(
            send, status, error_body(exc.message, exc.code), [(b"connection", b"close")]
        )

    async def _send_error(
        self,
        send: Send,
        status: int,
        body: dict[str, Any],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    *(extra or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _observe(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        method = scope["method"]
        self.metrics.observe(method, template, status, elapsed)
        if self.access_log is not None:
            state: dict[str, Any] = scope.get("state", {})
            self.access_log.write(
                json.dumps(
                    {
                        "time": iso(now_ms()),
                        "event": "request",
                        "requestId": request_id,
                        "method": method,
                        "path": scope["path"],
                        "route": template,
                        "status": status,
                        "durationMs": round(elapsed * 1000, 2),
                        "accountId": state.get("account_id"),
                        "keyId": state.get("key_id"),
                    },
                    separators=(",", ":"),
                )
            )


def _request_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            text: str = value.decode("latin-1")
            if 0 < len(text) <= 100 and text.isprintable():
                return text
    return f"{_RID_PREFIX}{next(_rid_counter):x}"


def _body_headers(scope: Scope) -> tuple[int | None, str | None]:
    length: int | None = None
    ctype: str | None = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif key == b"content-type":
            ctype = value.decode("latin-1")
    return length, ctype


def _json_ok(scope: Scope, ctype: str, length: int | None) -> bool:
    """A body on a JSON route must be declared as JSON (or be empty)."""
    if scope["method"] not in BODY_METHODS or length == 0:
        return True
    mime = ctype.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")
