"""Annotation routes: parse, call the annotation service on the executor, render."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response

from sessiond.annotations import service
from sessiond.annotations.models import STATUSES, AnnotationCreate, AnnotationPatch
from sessiond.annotations.schemas import AnnotationEnvelope, AnnotationList
from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created, page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared, comma_list, one_of
from sessiond.pagination import Limit

router = APIRouter(
    route_class=StrictRoute,
    prefix="/v1/sessions/{session_id}/annotations",
    tags=["annotations"],
    responses=ERRORS,
)


@router.get("", response_model=AnnotationList)
async def list_annotations(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    status: Annotated[str | None, Declared(pattern=comma_list(one_of(STATUSES)))] = None,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """The session's annotations, oldest first; ``status`` takes one or a comma list."""
    return await page(
        ctx,
        "annotations",
        service.list_page,
        principal.account_id,
        session_id,
        statuses=service.parse_statuses(status),
        limit=limit,
        cursor=cursor,
    )


@router.post("", status_code=201, response_model=AnnotationEnvelope)
async def create_annotation(
    session_id: str,
    body: AnnotationCreate,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Add a review note on a file line range or on a message.
    ``Idempotency-Key`` makes retries safe."""

    def create(tx: Tx) -> tuple[int, Any]:
        item = service.create(
            tx, ctx.settings.limits, principal.account_id, session_id, body, if_match=if_match
        )
        return 201, {"annotation": item}

    return await created(request, ctx, principal, create)


@router.get("/{annotation_id}", response_model=AnnotationEnvelope)
async def get_annotation(
    session_id: str, annotation_id: str, ctx: Ctx, principal: Reader
) -> Response:
    item = await ctx.db.read(service.get, principal.account_id, session_id, annotation_id)
    return Json({"annotation": item})


@router.patch("/{annotation_id}", response_model=AnnotationEnvelope)
async def patch_annotation(
    session_id: str,
    annotation_id: str,
    body: AnnotationPatch,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Change body, status or target (only the fields given)."""
    item = await ctx.db.write(
        service.update,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        annotation_id,
        body,
        if_match=if_match,
    )
    return Json({"annotation": item})


@router.delete("/{annotation_id}", status_code=204)
async def delete_annotation(
    session_id: str, annotation_id: str, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    await ctx.db.write(
        service.delete, principal.account_id, session_id, annotation_id, if_match=if_match
    )
    return Response(status_code=204)
