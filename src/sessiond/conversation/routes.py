"""Message routes: parse, call the message service on the executor, render."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response

from sessiond.conversation import messages
from sessiond.conversation.models import MessageCreate, MessagePatch
from sessiond.conversation.schemas import MessageEnvelope, MessageList
from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created, page_response
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared
from sessiond.pagination import Limit, check_limit
from sessiond.versions import appends

router = APIRouter(
    route_class=StrictRoute,
    prefix="/v1/sessions/{session_id}/messages",
    tags=["messages"],
    responses=ERRORS,
)


@router.post("", status_code=201, response_model=MessageEnvelope)
async def append_message(
    session_id: str,
    body: MessageCreate,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Append to the end of the conversation. ``Idempotency-Key`` makes retries safe."""
    limits = ctx.settings.limits

    def create(tx: Tx) -> tuple[int, Any]:
        message = appends.append(
            tx, limits, principal.account_id, session_id, body, if_match=if_match
        )
        return 201, {"message": message}

    return await created(request, ctx, principal, create)


@router.get("", response_model=MessageList)
async def list_messages(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    after: Annotated[int | None, Declared(minimum=0)] = None,
    before: Annotated[int | None, Declared(minimum=0)] = None,
    limit: Limit = None,
    cursor: str | None = None,
    order: Annotated[str, Declared(enum=["asc", "desc"])] = "asc",
) -> Response:
    """The current conversation path, oldest first (``order=desc``: newest first).

    ``after``/``before`` are seqs; ``before=S&limit=N`` gives the N messages just before S.
    A ``cursor`` keeps the direction and the limit of the request that issued it.
    """
    query = messages.PageQuery(
        after=after,
        before=before,
        limit=None if limit is None else check_limit(limit),
        cursor=cursor,
        order=order,
    )
    # One keyset page of an indexed path: bounded, so on the loop's thread (read_point).
    docs, next_cursor = await ctx.db.read_point(
        messages.list_page, principal.account_id, session_id, query
    )
    return page_response("messages", docs, next_cursor)


@router.get("/{message_id}", response_model=MessageEnvelope)
async def get_message(session_id: str, message_id: str, ctx: Ctx, principal: Reader) -> Response:
    text = await ctx.db.read_point(messages.get_text, principal.account_id, session_id, message_id)
    return Response(f'{{"message":{text}}}', media_type="application/json")


@router.patch("/{message_id}", response_model=MessageEnvelope)
async def patch_message(
    session_id: str,
    message_id: str,
    body: MessagePatch,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Stream into a message (``appendText``, ``appendParts``), finish it (``status``), or
    update a tool call (``toolCall``)."""
    message = await ctx.db.write(
        messages.update,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        message_id,
        body,
        if_match=if_match,
    )
    return Json({"message": message})


@router.delete("/{message_id}", status_code=204)
async def delete_message(
    session_id: str, message_id: str, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Remove the message from the conversation; its children follow its parent."""
    await ctx.db.write(
        messages.delete, principal.account_id, session_id, message_id, if_match=if_match
    )
    return Response(status_code=204)
