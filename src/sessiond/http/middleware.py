"""One pure-ASGI middleware for every request: request id, body limit, no-store,
metrics and one structured access-log line.

(Starlette's ``BaseHTTPMiddleware`` costs far more per request; this is on the hot path.)
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessiond.errors import PayloadTooLarge
from sessiond.http.errors import error_body
from sessiond.http.metrics import Metrics

access_log = logging.getLogger("sessiond.access")


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, body_limit: int, access_log: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit
        self.log_enabled = access_log

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

        length = _content_length(scope)
        try:
            if length is not None and length > self.body_limit:
                await self._reject_too_large(send_wrapper)
            else:
                await self.app(scope, self._limited(receive), send_wrapper)
        finally:
            self._observe(scope, status, time.perf_counter() - start, request_id)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.body_limit

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
            return message

        return wrapped

    async def _reject_too_large(self, send: Send) -> None:
        body = json.dumps(
            error_body(
                f"request body is over the {self.body_limit}-byte limit", "payload_too_large"
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
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
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.latency.labels(template).observe(elapsed)
        if self.log_enabled and access_log.isEnabledFor(logging.INFO):
            state: dict[str, Any] = scope.get("state", {})
            access_log.info(
                json.dumps(
                    {
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
    return "req_" + uuid.uuid4().hex[:20]


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
