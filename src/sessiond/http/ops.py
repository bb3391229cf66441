"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx
from sessiond.http.errors import error_response
from sessiond.http.respond import Json
from sessiond.http.routing import StrictRoute

log = logging.getLogger("sessiond.http")

router = APIRouter(route_class=StrictRoute, tags=["operations"])


class Status(BaseModel):
    status: Literal["ok"]


def _ping(tx: Tx) -> None:
    tx.conn.execute(sa.text("SELECT 1"))


@router.get("/healthz", response_model=Status)
async def healthz() -> Response:
    """The process is up (no database access, no auth)."""
    return Json({"status": "ok"})


@router.get("/readyz", response_model=Status)
async def readyz(request: Request, ctx: Ctx) -> Response:
    """200 when the database answers, 503 otherwise. No auth: the answer names no cause
    (that goes to the log, under the request id)."""
    try:
        await ctx.db.read(_ping)
    except Exception:
        request_id = request.scope.get("state", {}).get("request_id", "-")
        log.exception("readiness check failed (request %s)", request_id)
        return error_response(
            503,
            f"the database does not answer; the server log has the cause (request {request_id})",
            "not_ready",
            {"requestId": request_id},
        )
    return Json({"status": "ok"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text exposition format (version 0.0.4)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus metrics (no auth)."""
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
