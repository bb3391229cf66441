"""``POST /v1/sessions/{id}/compact``: the conversation becomes (summary + last N)."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, StrictInt

from sessiond.conversation.schemas import MessageOut
from sessiond.errors import invalid
from sessiond.http.deps import Ctx, IfMatch, Writer
from sessiond.http.respond import created
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import ApiModel, Declared, NotNull
from sessiond.versions import compact as compaction

router = APIRouter(
    route_class=StrictRoute, prefix="/v1/sessions/{session_id}", tags=["versions"], responses=ERRORS
)

KeepLast = Annotated[StrictInt, Declared(minimum=0, maximum=compaction.MAX_KEEP)]


class CompactBody(ApiModel):
    keep_last: Annotated[KeepLast | None, NotNull] = None
    expected_version: StrictInt | None = None


class CompactOut(BaseModel):
    message: MessageOut | None
    compactedCount: int


@router.post("/compact", response_model=CompactOut)
async def compact(
    session_id: str,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
    body: CompactBody | None = None,
) -> Response:
    """Summarize everything before the last ``keepLast`` messages (default 20) into one
    ``system`` message at seq 1, after checkpointing the full history (restore it, or
    revert the summary message, to get it back). ``message`` is null and
    ``compactedCount`` 0 when there is nothing to compact. ``Idempotency-Key`` accepted."""
    spec = body or CompactBody()
    if "keep_last" in spec.model_fields_set and spec.keep_last is None:
        raise invalid("keepLast", "may not be null (omit it for the default, 20)")
    keep = compaction.check_keep(spec.keep_last)

    response: Response = await compaction.compact(
        ctx.db,
        ctx.summarizer,
        functools.partial(created, request, ctx, principal),
        principal.account_id,
        session_id,
        keep,
        limits=ctx.settings.limits,
        scan=ctx.settings.summary_scan_messages,
        if_match=if_match,
        expected_version=spec.expected_version,
    )
    return response
