"""Note routes: parse, call the note service on the executor, render."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created, page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared
from sessiond.notes import service
from sessiond.notes.models import KINDS, NoteCreate, NotePatch
from sessiond.notes.schemas import NoteEnvelope, NoteList
from sessiond.pagination import Limit

router = APIRouter(route_class=StrictRoute, tags=["notes"], responses=ERRORS)

ITEM = "/v1/sessions/{session_id}/notes/{note_id}"


@router.get("/v1/notes", response_model=NoteList)
async def list_account_notes(
    ctx: Ctx,
    principal: Reader,
    workspace_id: Annotated[str | None, Query(alias="workspaceId")] = None,
    session_id: Annotated[str | None, Query(alias="sessionId")] = None,
    kind: Annotated[str | None, Declared(enum=["", *KINDS])] = None,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """Notes across the account's sessions, oldest first; filters combine with AND."""
    filters = service.NoteFilters(
        workspace_id=workspace_id or None,
        session_id=session_id or None,
        kind=service.check_kind(kind),
    )
    return await page(
        ctx,
        "notes",
        service.list_account,
        principal.account_id,
        filters,
        limit=limit,
        cursor=cursor,
    )


@router.get("/v1/sessions/{session_id}/notes", response_model=NoteList)
async def list_notes(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """The session's notes, oldest first."""
    return await page(
        ctx,
        "notes",
        service.list_session,
        principal.account_id,
        session_id,
        limit=limit,
        cursor=cursor,
    )


@router.post("/v1/sessions/{session_id}/notes", status_code=201, response_model=NoteEnvelope)
async def create_note(
    session_id: str,
    body: NoteCreate,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Add a note. ``Idempotency-Key`` makes retries safe."""
    limits = ctx.settings.limits

    def create(tx: Tx) -> tuple[int, Any]:
        note = service.create(tx, limits, principal.account_id, session_id, body, if_match=if_match)
        return 201, {"note": note}

    return await created(request, ctx, principal, create)


@router.get(ITEM, response_model=NoteEnvelope)
async def get_note(session_id: str, note_id: str, ctx: Ctx, principal: Reader) -> Response:
    note = await ctx.db.read(service.get, principal.account_id, session_id, note_id)
    return Json({"note": note})


@router.patch(ITEM, response_model=NoteEnvelope)
async def patch_note(
    session_id: str,
    note_id: str,
    body: NotePatch,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Change kind, title or body (only the fields given)."""
    note = await ctx.db.write(
        service.update,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        note_id,
        body,
        if_match=if_match,
    )
    return Json({"note": note})


@router.delete(ITEM, status_code=204)
async def delete_note(
    session_id: str, note_id: str, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    await ctx.db.write(service.delete, principal.account_id, session_id, note_id, if_match=if_match)
    return Response(status_code=204)
