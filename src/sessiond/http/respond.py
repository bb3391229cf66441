"""Response helpers: fast JSON, ETags, and idempotent creation responses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response

from sessiond import idempotency
from sessiond.auth.principal import Principal
from sessiond.context import AppContext
from sessiond.db.executor import Tx


class Json(Response):
    """``JSONResponse`` without the indirections: compact, UTF-8, no re-validation."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
