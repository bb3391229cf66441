"""Event routes: polling, SSE streams (per session and account-wide), custom events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from sessiond import jsontext
from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.errors import invalid
from sessiond.events import service
from sessiond.events.bus import Lagged
from sessiond.events.store import EventFilter, list_events, max_id, parse_types, render_event
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import SPACES, Declared, comma_list
from sessiond.pagination import Limit, check_limit
from sessiond.sessions import service as sessions
from sessiond.sessions.models import CustomEvent

router = APIRouter(route_class=StrictRoute, tags=["events"], responses=ERRORS)

MAX_EVENT_ID = 2**63 - 1  # ids are 64-bit signed integers on both backends
FRAMES_KEPT = 2048  # encoded SSE frames of recent events, per app


def _at_most(n: int) -> str:
    """An unanchored pattern for the decimal numbers 0 to ``n`` (leading zeros allowed)."""
    digits = str(n)
    shorter = f"[0-9]{{1,{len(digits) - 1}}}" if len(digits) > 1 else None
    same = [
        f"{digits[:i]}[0-{int(d) - 1}][0-9]{{{len(digits) - i - 1}}}"
        for i, d in enumerate(digits)
        if d != "0"
    ]
    return "0*(?:" + "|".join([*([shorter] if shorter else []), *same, digits]) + ")"


# ``?after=`` and the list's ``?cursor=``: an event id, or empty (``_after``).
EventId = Annotated[str | None, Declared(pattern=f"^(?:{_at_most(MAX_EVENT_ID)})?$")]
# ``?types=``: a comma list of types or prefixes, each at most 100 characters.
Types = Annotated[
    str | None,
    Declared(pattern=comma_list(f"[^,{SPACES}\\x00](?:[^,\\x00]{{0,98}}[^,{SPACES}\\x00])?")),
]


class EventOut(BaseModel):
    id: int
    type: str
    sessionId: str | None
    workspaceId: str | None
    data: Any
    createdAt: str


class EventList(BaseModel):
    events: list[EventOut]
    nextCursor: str | None


class EventEnvelope(BaseModel):
    event: EventOut


def _after(value: str | None, field: str) -> int:
    if value is None or value == "":
        return 0
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EVENT_ID:
        raise invalid(field, f"must be an event id (an integer from 0 to {MAX_EVENT_ID})")
    return int(value)


def resume_point(request: Request, after: str | None) -> int | None:
    """The id to resume after, or None for "live only, from now"."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        return _after(header.strip(), "Last-Event-ID")
    if after is None or after == "":
        return None
    return _after(after, "after")


async def _stream(ctx: AppContext, f: EventFilter, after: int) -> AsyncIterator[bytes]:
    frames = ctx.bus.frames
    async for row in stream_rows(ctx, f, after):
        yield _sse(frames, row)


async def stream_rows(ctx: AppContext, f: EventFilter, after: int) -> AsyncIterator[dict[str, Any]]:
    """Stored events after ``after``, then live ones: no gap, no duplicate.

    The subscription is opened before the catch-up query, so an event committed in
    between arrives both ways and is dropped the second time by its id.
    """
    catch_up = ctx.settings.tuning.event_catch_up_batch
    sub = ctx.bus.subscribe(f)
    ctx.metrics.sse_subscribers.inc()
    last = after
    try:
        catching_up = True
        while True:
            if catching_up:
                rows = await ctx.db.read(list_events, f, after=last, limit=catch_up)
                for row in rows:
                    yield row
                    last = row["id"]
                catching_up = len(rows) == catch_up
                continue
            item = await sub.get()
            if ctx.bus.closed:
                return
            if isinstance(item, Lagged):
                catching_up = True
                continue
            if item["id"] <= last:
                continue
            yield item
            last = item["id"]
    finally:
        sub.close()
        ctx.metrics.sse_subscribers.dec()


def _sse(frames: dict[int, bytes], row: dict[str, Any]) -> bytes:
    """The event's SSE frame, encoded once for every stream that sends it (``frames``,
    the bus's: a thousand subscribers of one session cost one encoding, not 1,000)."""
    frame = frames.get(row["id"])
    if frame is None:
        frame = ServerSentEvent(
            data=jsontext.dumps(render_event(row)),
            event=row["type"],
            id=str(row["id"]),
        ).encode()
        if len(frames) >= FRAMES_KEPT:
            frames.clear()
        frames[row["id"]] = frame
    return frame


async def _open_stream(ctx: AppContext, f: EventFilter, after: int | None) -> EventSourceResponse:
    await ctx.db.read(service.check_scope, f)
    if after is None:
        # Live only: start at the newest id now (read before subscribing, so nothing
        # committed from here on can be missed).
        after = await ctx.db.read(max_id)
    return EventSourceResponse(
        _stream(ctx, f, after),
        ping=ctx.settings.heartbeat_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/v1/sessions/{session_id}/events", response_model=EventList)
async def list_session_events(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    after: EventId = None,
    cursor: EventId = None,
    limit: Limit = None,
) -> Response:
    """Stored events with ``id > after``, oldest first. ``nextCursor`` is set while more exist."""
    start = _after(cursor, "cursor") if cursor else _after(after, "after")
    n = check_limit(limit)
    f = EventFilter(principal.account_id, session_id=session_id)
    rows = await ctx.db.read(service.page, f, after=start, limit=n + 1)
    # The same rule as every list: a next cursor exactly when a next page has rows.
    next_cursor = str(rows[n - 1]["id"]) if len(rows) > n else None
    return Json({"events": [render_event(r) for r in rows[:n]], "nextCursor": next_cursor})


@router.get(
    "/v1/sessions/{session_id}/events/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_session_events(
    request: Request,
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    after: EventId = None,
) -> EventSourceResponse:
    """SSE of the session's events; resumes after ``Last-Event-ID`` or ``?after=``."""
    f = EventFilter(principal.account_id, session_id=session_id)
    return await _open_stream(ctx, f, resume_point(request, after))


@router.get(
    "/v1/events/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_account_events(
    request: Request,
    ctx: Ctx,
    principal: Reader,
    workspace_id: Annotated[str | None, Query(alias="workspaceId")] = None,
    session_id: Annotated[str | None, Query(alias="sessionId")] = None,
    types: Types = None,
    after: EventId = None,
) -> EventSourceResponse:
    """SSE of every event of the account; ``types`` takes exact types or prefixes (``message.``)."""
    f = EventFilter(
        principal.account_id,
        session_id=session_id,
        workspace_id=workspace_id,
        types=parse_types(types),
    )
    return await _open_stream(ctx, f, resume_point(request, after))


@router.post("/v1/sessions/{session_id}/events", status_code=201, response_model=EventEnvelope)
async def publish_event(
    request: Request,
    session_id: str,
    body: CustomEvent,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Publish a ``custom.*`` event on the session's stream."""

    def create(tx: Tx) -> tuple[int, Any]:
        event = sessions.publish_custom(
            tx,
            ctx.settings.limits,
            principal.account_id,
            session_id,
            body.type,
            body.data,
            if_match=if_match,
        )
        tx.flush_events()
        return 201, {"event": render_event(event)}

    return await created(request, ctx, principal, create)


__all__ = ["Json", "router"]
