"""``POST /v1/sessions/{id}/summarize``: a summary now, without closing the session."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from sessiond.http.deps import Ctx, Reader
from sessiond.http.respond import Json
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.summaries import service as summaries

router = APIRouter(
    route_class=StrictRoute, prefix="/v1/sessions", tags=["summaries"], responses=ERRORS
)


class SummaryOut(BaseModel):
    text: str
    files: list[str]
    additions: int
    deletions: int


class SummaryEnvelope(BaseModel):
    summary: SummaryOut


@router.post("/{session_id}/summarize", response_model=SummaryEnvelope)
async def summarize(session_id: str, ctx: Ctx, principal: Reader) -> Response:
    """Summarize the session as it is now (any status; nothing is stored or changed)."""
    summary = await summaries.summarize(
        ctx.db,
        ctx.summarizer,
        principal.account_id,
        session_id,
        scan=ctx.settings.summary_scan_messages,
    )
    body: dict[str, Any] = {"summary": summary.as_json()}
    return Json(body)
