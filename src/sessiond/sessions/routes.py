"""Session routes: parse, call one service function on the executor, render."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from sessiond.agents.routes import check_agent
from sessiond.context import AppContext
from sessiond.conversation import messages
from sessiond.conversation.schemas import SessionWithMessages
from sessiond.db.executor import Tx
from sessiond.errors import UpstreamError, invalid
from sessiond.files import remote
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created, page, with_etag
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared, comma_list, one_of
from sessiond.pagination import Limit
from sessiond.sessions import kernel, listing
from sessiond.sessions import service as sessions
from sessiond.sessions.lifecycle import STATUSES
from sessiond.sessions.models import CloseBody, ContextBody, SessionCreate, SessionPatch, TagsPatch
from sessiond.sessions.render import render_session
from sessiond.sessions.schemas import ContextEnvelope, SessionEnvelope, SessionList
from sessiond.summaries import service as summaries
from sessiond.versions import sources

# ``?updatedAfter=``: ISO 8601 (``sessiond.ids.parse_iso``); empty is no filter.
UpdatedAfter = Annotated[str, Declared(anyOf=[{"format": "date-time"}, {"maxLength": 0}])]

router = APIRouter(
    route_class=StrictRoute, prefix="/v1/sessions", tags=["sessions"], responses=ERRORS
)


async def fetch_source(ctx: AppContext, git: dict[str, Any]) -> remote.Fetched:
    """Fetch a git source (in a worker thread: network) and check its tree; 422 for a
    bad URL, ref or tree, 502 ``upstream_error`` when the remote fails."""
    settings = ctx.settings
    url = remote.check_url(git["url"], settings.git_file_roots)
    try:
        fetched = await asyncio.to_thread(
            remote.fetch,
            url,
            git.get("ref"),
            store=settings.git_credentials,
            timeout=settings.git_timeout_seconds,
            max_bytes=settings.git_fetch_bytes,
        )
    except remote.RemoteError as e:
        raise UpstreamError(f"fetching {url} failed: {e}") from None
    await asyncio.to_thread(sources.check_fetched, fetched)
    return fetched


@router.post("", status_code=201, response_model=SessionEnvelope)
async def create_session(
    request: Request, ctx: Ctx, principal: Writer, body: SessionCreate | None = None
) -> Response:
    """Create a session. Send ``Idempotency-Key`` to make retries safe."""
    spec = body or SessionCreate()
    limits = ctx.settings.limits

    sources.check(spec.source)
    check_agent(ctx, spec.agent)
    fetched = None
    if spec.source is not None and "git" in spec.source:
        fetched = await fetch_source(ctx, spec.source["git"])

    def create(tx: Tx) -> tuple[int, Any]:
        row = sessions.create(tx, limits, principal.account_id, spec)
        if spec.source is not None:
            sources.apply(tx, limits, principal.account_id, row, spec.source, fetched)
        return 201, {"session": render_session(row, tx.now)}

    return await created(request, ctx, principal, create)


@router.get("", response_model=SessionList)
async def list_sessions(
    ctx: Ctx,
    principal: Reader,
    workspace_id: Annotated[str | None, Query(alias="workspaceId")] = None,
    status: Annotated[str | None, Declared(pattern=comma_list(one_of(STATUSES)))] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    parent_id: Annotated[str | None, Query(alias="parentId")] = None,
    q: str | None = None,
    updated_after: Annotated[UpdatedAfter | None, Query(alias="updatedAfter")] = None,
    sort: Annotated[str, Declared(enum=list(listing.SORTS))] = "lastActivityAt",
    order: Annotated[str, Declared(enum=["desc", "asc"])] = "desc",
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """List sessions, newest activity first; every filter combines with AND."""
    filters = listing.SessionFilters(
        workspace_id=workspace_id,
        statuses=listing.parse_statuses(status),
        tags=tag or [],
        parent_id=parent_id,
        q=q,
        updated_after=updated_after,
        sort=sort,
        order=order,
    )
    return await page(
        ctx,
        "sessions",
        listing.list_sessions,
        principal.account_id,
        filters,
        limit=limit,
        cursor=cursor,
        # A title search or tag filter may scan the account's sessions: a reader thread.
        bounded=not q and not tag and updated_after is None,
    )


@router.get("/{session_id}", response_model=SessionWithMessages)
async def get_session(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    include: Annotated[str | None, Declared(pattern=comma_list("messages"))] = None,
) -> Response:
    """The session; ``ETag`` is its ``lifecycleVersion``. ``?include=messages`` adds
    ``"messages"``: the first page of the conversation (50, oldest first)."""
    with_messages = _includes(include)

    def read(tx: Tx) -> tuple[int, str]:
        version, text = kernel.get_text(tx, principal.account_id, session_id)
        body = f'{{"session":{text}'
        if with_messages:
            docs, _ = messages.list_page(tx, principal.account_id, session_id, messages.PageQuery())
            body += f',"messages":[{",".join(docs)}]'
        return version, body + "}"

    point = ctx.db.read if with_messages else ctx.db.read_point
    version, body = await point(read)
    return Response(body, media_type="application/json", headers={"ETag": f'"{version}"'})


def _includes(include: str | None) -> bool:
    if include is None:
        return False
    names = {n.strip() for n in include.split(",") if n.strip()}
    unknown = names - {"messages"}
    if unknown:
        raise invalid("include", f"unknown: {', '.join(sorted(unknown))}; supported: messages")
    return "messages" in names


@router.patch("/{session_id}", response_model=SessionEnvelope)
async def patch_session(
    session_id: str, body: SessionPatch, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Change title, status, tags, metadata (replaced), ttlSeconds, agent, model, mode,
    permissions."""
    if "agent" in body.model_fields_set:
        check_agent(ctx, body.agent)

    def run(tx: Tx) -> dict[str, Any]:
        row = sessions.update(
            tx, ctx.settings.limits, principal.account_id, session_id, body, if_match=if_match
        )
        return render_session(row, tx.now)

    session = await ctx.db.write(run)
    return with_etag({"session": session}, session)


@router.delete("/{session_id}", status_code=204)
async def delete_session(
    session_id: str, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    await ctx.db.write(sessions.delete, principal.account_id, session_id, if_match=if_match)
    return Response(status_code=204)


@router.patch("/{session_id}/tags", response_model=SessionEnvelope)
async def patch_tags(
    session_id: str, body: TagsPatch, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """``set`` replaces the tags, then ``add`` appends, then ``remove`` removes."""

    def run(tx: Tx) -> dict[str, Any]:
        row = sessions.update_tags(
            tx, ctx.settings.limits, principal.account_id, session_id, body, if_match=if_match
        )
        return render_session(row, tx.now)

    session = await ctx.db.write(run)
    return with_etag({"session": session}, session)


@router.get("/{session_id}/context", response_model=ContextEnvelope)
async def get_context(session_id: str, ctx: Ctx, principal: Reader) -> Response:
    context = await ctx.db.read_point(kernel.get_context, principal.account_id, session_id)
    return Json({"context": context})


@router.put("/{session_id}/context", response_model=ContextEnvelope)
async def put_context(
    session_id: str, body: ContextBody, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Replace the context with ``{"context": {...}}``."""
    context = await ctx.db.write(
        sessions.replace_context,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        body.context,
        if_match=if_match,
        expected_version=body.expected_version,
    )
    return Json({"context": context})


@router.patch("/{session_id}/context", response_model=ContextEnvelope)
async def patch_context(
    session_id: str, body: ContextBody, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Apply ``{"context": <JSON Merge Patch, RFC 7386>}``."""
    context = await ctx.db.write(
        sessions.patch_context,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        body.context,
        if_match=if_match,
        expected_version=body.expected_version,
    )
    return Json({"context": context})


@router.post("/{session_id}/close", response_model=SessionEnvelope)
async def close_session(
    session_id: str,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
    body: CloseBody | None = None,
) -> Response:
    """``active`` → ``closed``. The summary is produced right after, in the background; it
    appears on the session with a ``session.updated`` event (``changes: ["summary"]``)."""
    expected = body.expected_version if body else None

    def run(tx: Tx) -> dict[str, Any]:
        row = sessions.close(
            tx, principal.account_id, session_id, if_match=if_match, expected_version=expected
        )
        return render_session(row, tx.now)

    session = await ctx.db.write(run)
    ctx.spawn(
        summaries.produce(
            ctx.db,
            ctx.summarizer,
            principal.account_id,
            session_id,
            scan=ctx.settings.summary_scan_messages,
        ),
        name=f"summary {session_id}",
    )
    return with_etag({"session": session}, session)
