"""Task routes: parse, call the task service on the executor, render."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.tasks import service
from sessiond.tasks.models import TaskCreate, TaskList, TaskPatch
from sessiond.tasks.schemas import TaskEnvelope, TaskListOut

router = APIRouter(
    route_class=StrictRoute,
    prefix="/v1/sessions/{session_id}/tasks",
    tags=["tasks"],
    responses=ERRORS,
)


def _list(tasks: list[dict[str, Any]]) -> Json:
    return Json({"tasks": tasks, "nextCursor": None})


@router.get("", response_model=TaskListOut)
async def list_tasks(session_id: str, ctx: Ctx, principal: Reader) -> Response:
    """The whole list, in order (at most 500 tasks: never more than one page)."""
    return _list(await ctx.db.read(service.list_tasks, principal.account_id, session_id))


@router.put("", response_model=TaskListOut)
async def replace_tasks(
    session_id: str, body: TaskList, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Replace the whole list, in the given order. An item with the ``id`` of an existing
    task keeps that id and its createdAt; the tasks left out are deleted."""
    tasks = await ctx.db.write(
        service.replace, principal.account_id, session_id, body, if_match=if_match
    )
    return _list(tasks)


@router.post("", status_code=201, response_model=TaskEnvelope)
async def create_task(
    session_id: str,
    body: TaskCreate,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Add one task: appended, or inserted at ``position`` (0-based).
    ``Idempotency-Key`` makes retries safe."""

    def create(tx: Tx) -> tuple[int, Any]:
        task = service.create(tx, principal.account_id, session_id, body, if_match=if_match)
        return 201, {"task": task}

    return await created(request, ctx, principal, create)


@router.get("/{task_id}", response_model=TaskEnvelope)
async def get_task(session_id: str, task_id: str, ctx: Ctx, principal: Reader) -> Response:
    task = await ctx.db.read(service.get, principal.account_id, session_id, task_id)
    return Json({"task": task})


@router.patch("/{task_id}", response_model=TaskEnvelope)
async def patch_task(
    session_id: str,
    task_id: str,
    body: TaskPatch,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Change content, status or priority; ``position`` moves the task."""
    task = await ctx.db.write(
        service.update, principal.account_id, session_id, task_id, body, if_match=if_match
    )
    return Json({"task": task})


@router.delete("/{task_id}", status_code=204)
async def delete_task(
    session_id: str, task_id: str, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    await ctx.db.write(service.delete, principal.account_id, session_id, task_id, if_match=if_match)
    return Response(status_code=204)
