"""``POST /v1/sessions/{id}/summarize``: a summary now, without closing the session."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, StrictBool

from sessiond.errors import Forbidden
from sessiond.http.deps import Ctx, Reader
from sessiond.http.respond import Json
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import ApiModel
from sessiond.summaries import service as summaries

router = APIRouter(
    route_class=StrictRoute, prefix="/v1/sessions", tags=["summaries"], responses=ERRORS
)


class SummarizeBody(ApiModel):
    # Also store the summary as the session's memory item (namespace session-memory).
    remember: StrictBool = False


class SummaryOut(BaseModel):
    text: str
    files: list[str]
    additions: int
    deletions: int
    by: str
    fallbackReason: str | None


class SummaryEnvelope(BaseModel):
    summary: SummaryOut


@router.post("/{session_id}/summarize", response_model=SummaryEnvelope)
async def summarize(
    session_id: str, ctx: Ctx, principal: Reader, body: SummarizeBody | None = None
) -> Response:
    """Summarize the session as it is now (any status). Nothing is stored, unless
    ``remember: true`` (a write key): then the summary becomes the session's memory item,
    replacing the one a close or an earlier summarize stored."""
    remember = body is not None and body.remember
    if remember and not principal.allows("write"):
        raise Forbidden("remember: true needs a key with the write role")
    summary = await summaries.summarize(
        ctx.db,
        ctx.summarizer,
        principal.account_id,
        session_id,
        scan=ctx.settings.summary_scan_messages,
    )
    if remember:
        await ctx.db.write(summaries.remember, principal.account_id, session_id, summary)
    return Json({"summary": summary.as_json()})
