"""Workspace routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, StrictStr

from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx, Reader, Writer
from sessiond.http.respond import Json, created, page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import ApiModel, Declared
from sessiond.pagination import Limit
from sessiond.workspaces import service as workspaces

router = APIRouter(
    route_class=StrictRoute,
    prefix="/v1/workspaces",
    tags=["workspaces"],
    responses=ERRORS,
)


class WorkspaceCreate(ApiModel):
    id: Annotated[StrictStr, Declared(pattern=f"^{workspaces.ID_RE.pattern}$")]
    name: StrictStr | None = None


class WorkspacePatch(ApiModel):
    name: StrictStr | None = None


class WorkspaceOut(BaseModel):
    id: str
    name: str
    createdAt: str
    updatedAt: str


class WorkspaceEnvelope(BaseModel):
    workspace: WorkspaceOut


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceOut]
    nextCursor: str | None


@router.get("", response_model=WorkspaceList)
async def list_workspaces(
    ctx: Ctx, principal: Reader, limit: Limit = None, cursor: str | None = None
) -> Response:
    return await page(
        ctx, "workspaces", workspaces.list_page, principal.account_id, limit=limit, cursor=cursor
    )


@router.post("", status_code=201, response_model=WorkspaceEnvelope)
async def create_workspace(
    request: Request, body: WorkspaceCreate, ctx: Ctx, principal: Writer
) -> Response:
    def create(tx: Tx) -> tuple[int, Any]:
        row = workspaces.create(tx, principal.account_id, body.id, body.name)
        return 201, {"workspace": workspaces.render(row)}

    return await created(request, ctx, principal, create)


@router.get("/{workspace_id}", response_model=WorkspaceEnvelope)
async def get_workspace(workspace_id: str, ctx: Ctx, principal: Reader) -> Response:
    row = await ctx.db.read(workspaces.get, principal.account_id, workspace_id)
    return Json({"workspace": workspaces.render(row)})


@router.patch("/{workspace_id}", response_model=WorkspaceEnvelope)
async def patch_workspace(
    workspace_id: str, body: WorkspacePatch, ctx: Ctx, principal: Writer
) -> Response:
    row = await ctx.db.write(workspaces.update, principal.account_id, workspace_id, body.name)
    return Json({"workspace": workspaces.render(row)})


@router.delete("/{workspace_id}", status_code=204)
async def delete_workspace(workspace_id: str, ctx: Ctx, principal: Writer) -> Response:
    await ctx.db.write(workspaces.delete, principal.account_id, workspace_id)
    return Response(status_code=204)
