"""``/api/acp``: JSON-RPC 2.0 over POST (one message or a batch) and the session's ACP
notifications over SSE (docs/acp.md)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, RootModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from sessiond.acp import methods, rpc
from sessiond.acp.updates import Translator
from sessiond.auth.principal import Principal
from sessiond.context import AppContext
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import SessiondError
from sessiond.events.routes import resume_point, stream_rows
from sessiond.events.store import EventFilter, render_event
from sessiond.http.deps import Ctx, Reader
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.sessions import kernel

log = logging.getLogger("sessiond.acp")
router = APIRouter(route_class=StrictRoute, tags=["acp"], responses=ERRORS)


class RpcErrorOut(BaseModel):
    code: int  # -32700, -32600, -32601, -32602, -32603
    message: str
    data: dict[str, Any]  # {"code": the sessiond error code, "details"?}


class RpcResponse(BaseModel):
    jsonrpc: str  # "2.0"
    id: str | int | None
    result: Any = None
    error: RpcErrorOut | None = None


class RpcAnswer(RootModel[RpcResponse | list[RpcResponse]]):
    """One JSON-RPC response, or a list of them for a batch (204: nothing to answer)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def _handle(ctx: AppContext, who: Principal, raw: Any) -> dict[str, Any] | None:
    """The response to one message (None for a notification or a response)."""
    try:
        msg = rpc.parse_one(raw)
    except rpc.RpcError as e:
        return rpc.failure(raw.get("id") if isinstance(raw, dict) else None, e)
    if msg.kind == "response":
        try:
            await methods.answer_permission(ctx, who, msg.id, msg.result, msg.error)
        except (SessiondError, rpc.RpcError) as e:
            log.info("answer to permission request %s not applied: %s", msg.id, e)
        return None
    try:
        result = await methods.call(ctx, who, msg.method, msg.params)
    except rpc.RpcError as e:
        error: rpc.RpcError = e
    except SessiondError as e:
        error = rpc.from_sessiond(e)
    except Exception as e:
        log.exception("ACP method %s failed", msg.method)
        error = rpc.RpcError(rpc.INTERNAL_ERROR, f"internal error: {type(e).__name__}", "internal")
    else:
        return None if msg.kind == "notification" else rpc.reply(msg.id, result)
    return None if msg.kind == "notification" else rpc.failure(msg.id, error)


@router.post(
    "/api/acp", response_model=RpcAnswer, responses={204: {"description": "nothing to answer"}}
)
async def post_acp(request: Request, ctx: Ctx, principal: Reader) -> Response:
    """One JSON-RPC message or a batch: ``initialize``, ``session/new``, ``session/load``,
    ``session/list``, ``session/prompt`` (answers when the turn ends), ``session/cancel``,
    ``session/set_mode``, and responses to ``session/request_permission``."""
    body = await request.body()
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        error = rpc.RpcError(rpc.PARSE_ERROR, "the body is not JSON", "invalid_json")
        return Response(_dumps(rpc.failure(None, error)), media_type="application/json")
    if isinstance(raw, list):
        if not raw or len(raw) > rpc.MAX_BATCH:
            error = rpc.RpcError(
                rpc.INVALID_REQUEST,
                f"a batch holds 1 to {rpc.MAX_BATCH} messages",
                "invalid_request",
            )
            return Response(_dumps(rpc.failure(None, error)), media_type="application/json")
        answers = await asyncio.gather(*(_handle(ctx, principal, m) for m in raw))
        out: Any = [a for a in answers if a is not None]
    else:
        out = await _handle(ctx, principal, raw)
    if not out:
        return Response(status_code=204)
    return Response(_dumps(out), media_type="application/json")


async def _acp_stream(
    ctx: AppContext, account_id: str, session_id: str, after: int
) -> AsyncIterator[ServerSentEvent]:
    translator = Translator()
    f = EventFilter(account_id, session_id=session_id)
    async for row in stream_rows(ctx, f, after):
        event = render_event(row)
        pending = None
        if event["type"] == "approval.requested":
            pending = await ctx.db.read(_pending, account_id, session_id)
        messages = translator.translate(event, pending)
        for i, message in enumerate(messages):
            last = i == len(messages) - 1
            # The id goes on the event's last message: a client that reconnects after a
            # cut mid-event gets the event again rather than missing part of it.
            yield ServerSentEvent(data=_dumps(message), id=str(event["id"]) if last else None)


def _pending(tx: Tx, account_id: str, session_id: str) -> set[str]:
    a = t.approvals.c
    q = (
        t.approvals.select()
        .with_only_columns(a.id)
        .where(a.account_id == account_id, a.session_id == session_id, a.status == "pending")
    )
    return set(tx.conn.execute(q).scalars())


@router.get(
    "/api/acp",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_acp(
    request: Request,
    ctx: Ctx,
    principal: Reader,
    session_id: Annotated[str, Query(alias="sessionId")],
) -> EventSourceResponse:
    """The session as ACP messages (``session/update`` notifications, and
    ``session/request_permission`` requests to answer by POST), from its first event or
    after ``Last-Event-ID``; a comment line every 15 s."""
    await ctx.db.read(kernel.require_exists, principal.account_id, session_id)
    after = resume_point(request, None) or 0
    return EventSourceResponse(
        _acp_stream(ctx, principal.account_id, session_id, after),
        ping=ctx.settings.heartbeat_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
