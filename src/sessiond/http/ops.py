"""Operations endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Response

from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx
from sessiond.http.respond import Json

router = APIRouter(tags=["operations"])


def _ping(tx: Tx) -> None:
    tx.conn.execute(sa.text("SELECT 1"))


@router.get("/healthz")
async def healthz() -> Response:
    """The process is up (no database access, no auth)."""
    return Json({"status": "ok"})


@router.get("/readyz")
async def readyz(ctx: Ctx) -> Response:
    """200 when the database answers, 503 otherwise."""
    try:
        await ctx.db.read(_ping)
    except Exception as exc:
        body = {"status": "error", "error": f"database unavailable: {exc}", "code": "not_ready"}
        return Json(body, status_code=503)
    return Json({"status": "ok"})


@router.get("/metrics")
async def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
