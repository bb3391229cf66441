"""Response helpers: fast JSON, ETags, and idempotent creation responses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response

from sessiond import idempotency, jsontext
from sessiond.auth.principal import Principal
from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.pagination import check_limit


class Json(Response):
    """``JSONResponse`` without the indirections: compact, UTF-8, no re-validation."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsontext.dumps_bytes(content)


def with_etag(body: dict[str, Any], session: dict[str, Any], status: int = 200) -> Json:
    return Json(body, status_code=status, headers={"ETag": f'"{session["lifecycleVersion"]}"'})


async def created(
    request: Request,
    ctx: AppContext,
    principal: Principal,
    create: Callable[[Tx], tuple[int, Any]],
) -> Response:
    """Run a creating write with ``Idempotency-Key`` support and render its response."""
    body = await request.body()
    outcome = await idempotency.run(
        ctx.db,
        account_id=principal.account_id,
        key=request.headers.get("idempotency-key"),
        fingerprint=idempotency.request_hash(request.method, request.url.path, body),
        ttl_seconds=ctx.settings.idempotency_ttl_seconds,
        create=create,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Response(
        outcome.body, status_code=outcome.status, media_type="application/json", headers=headers
    )


def page_response(key: str, items: list[Any], next_cursor: str | None) -> Response:
    """``{key: items, "nextCursor": ...}``. Items are rendered dicts, or JSON texts (a
    service that renders rows to text, as sessions, messages and cache entries do), which
    are spliced in as they are."""
    if items and isinstance(items[0], str):
        body = f'{{"{key}":[{",".join(items)}],"nextCursor":{json.dumps(next_cursor)}}}'
        return Response(body, media_type="application/json")
    return Json({key: items, "nextCursor": next_cursor})


async def page(
    ctx: AppContext,
    key: str,
    read: Callable[..., tuple[list[Any], str | None]],
    *args: Any,
    limit: int | None,
    cursor: str | None,
    bounded: bool = False,
    **kwargs: Any,
) -> Response:
    """One page of a keyset list: ``read(tx, *args, limit=, cursor=, **kwargs)`` (a service
    listing; ``limit`` checked and defaulted here) answered by ``page_response``.
    ``bounded``: the page is one indexed range read (no filter that may scan), so it runs
    as ``read_point`` (on SQLite, on the loop's thread: no hop to a reader thread)."""
    run = ctx.db.read_point if bounded else ctx.db.read
    items, next_cursor = await run(read, *args, limit=check_limit(limit), cursor=cursor, **kwargs)
    return page_response(key, items, next_cursor)
