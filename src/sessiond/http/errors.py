"""The one error renderer.

Every error body is ``{"status": "error", "error", "code", "details"?}`` (API.md).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sessiond.errors import SessiondError
from sessiond.http.routing import flatten_routes

NO_STORE = {"Cache-Control": "no-store"}
_PARAM = re.compile(r"\{[^}]*\}")  # a path parameter in a route's path format


def error_body(message: str, code: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "error": message, "code": code}
    if details:
        body["details"] = details
    return body


def internal_error(request_id: str) -> dict[str, Any]:
    """The body of a 500: a bug, with the request id to find it in the log."""
    return error_body(
        f"internal error; report request id {request_id}", "internal", {"requestId": request_id}
    )


def error_response(
    status: int,
    message: str,
    code: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(message, code, details),
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "tags", 0)`` → ``tags[0]``; query and header names as they are."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


def validation_errors(exc: RequestValidationError) -> tuple[int, str, str, dict[str, Any] | None]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "request body is not valid JSON (UTF-8); fix the syntax", "invalid_json", None
    items: list[dict[str, str]] = []
    for e in errors:
        field = _field(tuple(e.get("loc", ())))
        kind = e.get("type")
        if kind == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif kind == "missing":
            msg = "required"
        else:
            msg = str(e.get("msg", "invalid"))
        items.append({"field": field, "message": msg})
    message = "; ".join(f"{i['field']}: {i['message']}" for i in items)
    return 422, message, "validation_error", {"errors": items}


def install(app: FastAPI) -> None:
    @app.exception_handler(SessiondError)
    async def _domain(request: Request, exc: SessiondError) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return error_response(exc.status, exc.message, exc.code, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, code, details = validation_errors(exc)
        return error_response(status, message, code, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, SessiondError):  # raised while FastAPI read the body
            return error_response(cause.status, cause.message, cause.code, cause.details)
        if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8 / JSON)
            return error_response(
                400, "request body is not valid JSON (UTF-8); fix the encoding", "invalid_json"
            )
        if exc.status_code == 404:
            return error_response(404, f"no route {request.url.path}; see /docs", "not_found")
        if exc.status_code == 405:
            allow = ", ".join(_allowed_methods(request)) or (exc.headers or {}).get("Allow", "")
            return error_response(
                405,
                f"{request.method} is not allowed on {request.url.path}; allowed: {allow}",
                "method_not_allowed",
                headers={"Allow": allow} if allow else None,
            )
        return error_response(exc.status_code, str(exc.detail), "http_error")

    # Unhandled errors are answered by ``http.middleware.EdgeMiddleware`` (internal_error),
    # outside every handler, so the connection survives them.


def _allowed_methods(request: Request) -> list[str]:
    """Every method accepted at this path (Starlette names only the first route's).

    Only the routes that match it most closely count: the ones with the most literal
    text. ``/v1/sessions/{session_id}``'s pattern also matches ``/v1/sessions/x:merge``
    (``[^/]+`` takes ``x:merge``), but that path is ``/v1/sessions/{session_id}:merge``'s.
    """
    methods: set[str] = set()
    closest = -1
    scope = {**request.scope, "method": "__none__"}
    for route in flatten_routes(request.app.routes):
        match, _ = route.matches(scope)
        if match == Match.NONE:
            continue
        literal = len(_PARAM.sub("", getattr(route, "path_format", "")))
        if literal > closest:
            closest, methods = literal, set()
        if literal == closest:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
