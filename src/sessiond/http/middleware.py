"""One pure-ASGI middleware for every request: request id, body limit, JSON content
type, no-store, metrics and one structured access-log line.

(Starlette's ``BaseHTTPMiddleware`` costs far more per request; this is on the hot path.)
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessiond.errors import PayloadTooLarge, UnsupportedMediaType
from sessiond.http.accesslog import AccessLog
from sessiond.http.errors import error_body
from sessiond.http.metrics import Metrics
from sessiond.ids import iso, now_ms

# Request ids: unique per process start, cheap to make (uuid4 per request is not).
_RID_PREFIX = f"req_{uuid.uuid4().hex[:8]}_"
_rid_counter = itertools.count(1)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Routes whose bodies are raw bytes rather than JSON (files, git); matched on the path.
RAW_BODY_MARKERS = ("/files/", "/git/")


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        body_limit: int,
        access_log: AccessLog | None,
        raw_body_limit: int | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit
        # Raw-body routes (file uploads, git pushes) may carry up to the file limit.
        self.raw_body_limit = max(body_limit, raw_body_limit or 0)
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append(rid_header)
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        length, ctype = _body_headers(scope)
        limit = self.raw_body_limit if _is_raw(scope["path"]) else self.body_limit
        try:
            if length is not None and length > limit:
                await self._reject(
                    send_wrapper,
                    413,
                    PayloadTooLarge(f"request body is over the {limit}-byte limit"),
                )
            elif ctype is not None and not _json_ok(scope, ctype, length):
                mime = ctype.split(";", 1)[0].strip()
                await self._reject(
                    send_wrapper,
                    415,
                    UnsupportedMediaType(
                        f"Content-Type {mime} is not accepted here; send application/json"
                    ),
                )
            else:
                await self.app(scope, self._limited(receive, limit), send_wrapper)
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
        body = json.dumps(error_body(exc.message, exc.code)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

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
    if mime == "application/json" or mime.endswith("+json"):
        return True
    return _is_raw(scope["path"])


def _is_raw(path: str) -> bool:
    return any(marker in path for marker in RAW_BODY_MARKERS)
