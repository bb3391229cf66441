"""``StrictRoute``: the route class of every API route (a test checks the route table).

Before a handler runs, the URL is held to the same rules as a body (``sessiond.values``):

- a path parameter with NUL or invalid UTF-8 names nothing that can exist: 404 — or 422
  ``invalid_path`` on a route whose parameter is a workspace path (``{path:path}``);
- a query parameter with NUL or invalid UTF-8: 422 naming the parameter;
- the JSON body is parsed by ``values.loads``: no NaN/Infinity, no lone surrogate (400
  ``invalid_json``), no NUL in any string (422 naming the field).

Both backends answer these inputs the same way, and none reaches the database.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.convertors import PathConvertor
from starlette.routing import Match
from starlette.types import Scope

from sessiond import values
from sessiond.errors import InvalidPath, NotFound, invalid


class StrictRequest(Request):
    """A request whose ``json()`` is ``values.loads``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = values.loads(await self.body())
        return self._json


def _clean(raw: bytes) -> bool:
    """Percent-decoded ``raw`` is UTF-8 without NUL."""
    if b"%" not in raw and raw.isascii():
        return b"\x00" not in raw
    data = unquote_to_bytes(raw)
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_url(scope: Scope, *, path_param: bool) -> None:
    """Refuse a URL whose path or query holds NUL or invalid UTF-8 (see module doc)."""
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    if not _clean(raw_path):
        if path_param:
            reason = "must be UTF-8 without NUL"
            raise InvalidPath(
                f"path: {reason}", details={"errors": [{"field": "path", "message": reason}]}
            )
        raise NotFound("nothing here: the URL holds NUL or bytes that are not UTF-8")
    query: bytes = scope.get("query_string", b"")
    if query and not _clean(query):
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            if not _clean(value.replace(b"+", b" ")) or not _clean(name):
                field = unquote_to_bytes(name).decode("utf-8", "replace").replace("\x00", "")
                raise invalid(field or "query", "must be UTF-8 without NUL")


class StrictRoute(APIRoute):
    """An ``APIRoute`` that checks the URL and parses JSON strictly (module doc)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        path_param = any(isinstance(c, PathConvertor) for c in self.param_convertors.values())

        async def strict(request: Request) -> Response:
            check_url(request.scope, path_param=path_param)
            return await handler(StrictRequest(request.scope, request.receive, request._send))

        return strict


def flatten_routes(routes: list[Any]) -> Iterator[Any]:
    """Routes, looking inside included routers (FastAPI keeps them as wrappers)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from flatten_routes(inner)
        else:
            yield route


_F = TypeVar("_F", bound=Callable[..., Any])
RAW_BODY = "sessiond_raw_body"


def raw_body(endpoint: _F) -> _F:
    """Mark a route whose body is raw bytes (a file, a git pack): the edge lets it carry
    up to the file limit and does not require ``application/json``."""
    setattr(endpoint, RAW_BODY, True)
    return endpoint


OWN_LIMIT = "sessiond_own_limit"


def streamed_body(endpoint: _F) -> _F:
    """Mark a raw-body route that reads its body as a stream and enforces a limit of its
    own (an import archive: ``import_max_bytes``): the edge does not cap its size."""
    setattr(endpoint, OWN_LIMIT, True)
    return raw_body(endpoint)


class RawBodyRoutes:
    """The routes marked ``raw_body``; ``matches(scope)`` tells whether a request goes to
    one of them, ``own_limit(scope)`` whether to one marked ``streamed_body`` — decided
    by the routes' own patterns, never by the path's text."""

    def __init__(self, routes: list[Any]) -> None:
        marked = [(r, getattr(r, "endpoint", None)) for r in flatten_routes(routes)]
        self.routes = [r for r, e in marked if getattr(e, RAW_BODY, 0)]
        self.streamed = [r for r, e in marked if getattr(e, OWN_LIMIT, 0)]

    def matches(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)

    def own_limit(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.streamed)
