"""Approval routes: request, grant/deny, read (with long-poll), list, review queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from sessiond.approvals import service as approvals
from sessiond.approvals.models import STATUSES, ApprovalCreate, Decision
from sessiond.approvals.schemas import ApprovalEnvelope, ApprovalList
from sessiond.approvals.wait import wait_for_decision
from sessiond.auth.principal import Principal
from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.errors import invalid
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created, page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared
from sessiond.pagination import Limit

router = APIRouter(route_class=StrictRoute, tags=["approvals"], responses=ERRORS)

BASE = "/v1/sessions/{session_id}/approvals"
MAX_WAIT_SECONDS = 60
# ``?status=``: one status, or empty for all (``approvals.service.parse_status``).
Status = Annotated[str | None, Declared(enum=["", *STATUSES])]


@router.post(BASE, status_code=201, response_model=ApprovalEnvelope)
async def request_approval(
    session_id: str,
    body: ApprovalCreate,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Ask a human to decide. ``Idempotency-Key`` makes retries safe."""
    limits = ctx.settings.limits

    def create(tx: Tx) -> tuple[int, Any]:
        approval = approvals.create(
            tx, limits, principal.account_id, session_id, body, if_match=if_match
        )
        return 201, {"approval": approval}

    return await created(request, ctx, principal, create)


@router.get(BASE, response_model=ApprovalList)
async def list_session_approvals(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    status: Status = None,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """The session's approvals, oldest first; ``status`` = pending | granted | denied."""
    f = approvals.ApprovalFilters(status=approvals.parse_status(status), session_id=session_id)
    return await page(
        ctx,
        "approvals",
        approvals.list_page,
        principal.account_id,
        f,
        limit=limit,
        cursor=cursor,
        session_scoped=True,
    )


@router.get("/v1/approvals", response_model=ApprovalList)
async def review_queue(
    ctx: Ctx,
    principal: Reader,
    status: Status = None,
    workspace_id: Annotated[str | None, Query(alias="workspaceId")] = None,
    session_id: Annotated[str | None, Query(alias="sessionId")] = None,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """Every approval of the account, oldest first: ``?status=pending`` is the review queue."""
    f = approvals.ApprovalFilters(
        status=approvals.parse_status(status),
        session_id=session_id or None,
        workspace_id=workspace_id or None,
    )
    return await page(
        ctx, "approvals", approvals.list_page, principal.account_id, f, limit=limit, cursor=cursor
    )


@router.get(BASE + "/{approval_id}", response_model=ApprovalEnvelope)
async def get_approval(
    session_id: str,
    approval_id: str,
    ctx: Ctx,
    principal: Reader,
    wait: Annotated[int | None, Declared(minimum=0, maximum=MAX_WAIT_SECONDS)] = None,
) -> Response:
    """The approval. ``?wait=N`` (0 to 60 s) long-polls: it answers as soon as the approval
    is decided, or after N seconds with status ``pending``."""
    if wait is not None and not 0 <= wait <= MAX_WAIT_SECONDS:
        raise invalid("wait", f"must be between 0 and {MAX_WAIT_SECONDS} seconds")
    if not wait:
        approval = await ctx.db.read(approvals.get, principal.account_id, session_id, approval_id)
    else:
        approval = await wait_for_decision(
            ctx.db, ctx.bus, principal.account_id, session_id, approval_id, wait
        )
    return Json({"approval": approval})


async def _decide(
    ctx: AppContext,
    principal: Principal,
    session_id: str,
    approval_id: str,
    verdict: str,
    body: Decision | None,
    if_match: int | str | None,
) -> Response:
    approval = await ctx.db.write(
        approvals.decide,
        principal.account_id,
        session_id,
        approval_id,
        verdict,
        comment=body.comment if body is not None else None,
        decided_by=principal.key_id,
        option_id=body.option_id if body is not None else None,
        if_match=if_match,
    )
    return Json({"approval": approval})


@router.post(BASE + "/{approval_id}/grant", response_model=ApprovalEnvelope)
async def grant_approval(
    session_id: str,
    approval_id: str,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
    body: Decision | None = None,
) -> Response:
    """Grant a pending approval (``{comment?}``). A decision is final: a second → 409."""
    return await _decide(ctx, principal, session_id, approval_id, "granted", body, if_match)


@router.post(BASE + "/{approval_id}/deny", response_model=ApprovalEnvelope)
async def deny_approval(
    session_id: str,
    approval_id: str,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
    body: Decision | None = None,
) -> Response:
    """Deny a pending approval (``{comment?}``). A decision is final: a second → 409."""
    return await _decide(ctx, principal, session_id, approval_id, "denied", body, if_match)
