"""Memory routes (API.md § Memory): items, and hybrid search over them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx, Reader, Writer
from sessiond.http.respond import Json, created, page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.memory import search, service
from sessiond.memory.models import MemoryCreate, MemoryPatch, MemorySearch
from sessiond.memory.runtime import Memory
from sessiond.memory.schemas import MemoryEnvelope, MemoryList, SearchOut
from sessiond.pagination import Limit

router = APIRouter(route_class=StrictRoute, prefix="/v1/memory", tags=["memory"], responses=ERRORS)


def _memory(ctx: AppContext) -> Memory:
    assert ctx.memory is not None, "the app's lifespan makes it"
    return ctx.memory


@router.post("", status_code=201, response_model=MemoryEnvelope)
async def create_memory(
    body: MemoryCreate, request: Request, ctx: Ctx, principal: Writer
) -> Response:
    """File a memory item. Its vector is made before it is stored (so it is found by
    meaning at once); when the embedder fails it is stored without one and embedded
    later. ``Idempotency-Key`` makes retries safe."""
    memory = _memory(ctx)
    # Refuse a bad item before paying for its embedding.
    service.check_namespace(body.namespace)
    service.check_text(memory.limits, body.text)
    embedded = await memory.embed_text(body.text)

    def create(tx: Tx) -> tuple[int, Any]:
        item = service.create(tx, memory.limits, principal.account_id, body, embedded)
        return 201, {"memory": item}

    return await created(request, ctx, principal, create)


@router.get("", response_model=MemoryList)
async def list_memories(
    ctx: Ctx,
    principal: Reader,
    namespace: str | None = None,
    session_id: Annotated[str | None, Query(alias="sessionId")] = None,
    workspace_id: Annotated[str | None, Query(alias="workspaceId")] = None,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """The account's items, oldest first; filters combine with AND (namespace: exact)."""
    return await page(
        ctx,
        "memories",
        service.list_page,
        principal.account_id,
        _memory(ctx).model,
        namespace=namespace or None,
        session_id=session_id or None,
        workspace_id=workspace_id or None,
        limit=limit,
        cursor=cursor,
    )


@router.post("/search", response_model=SearchOut)
async def search_memory(body: MemorySearch, ctx: Ctx, principal: Reader) -> Response:
    """Hybrid search: full text and vector similarity fused by reciprocal rank; every
    filter applies before ranking. ``mode`` in the answer is what was used."""
    search.check_query(body.query, body.top_k)
    if body.namespace is not None:
        service.check_namespace(body.namespace)
    filters = search.Filters(
        namespace=body.namespace,
        session_id=body.session_id,
        workspace_id=body.workspace_id,
        metadata=search.check_metadata_filter(body.metadata),
    )
    result = await _memory(ctx).search(
        principal.account_id, body.query, filters, top_k=body.top_k, mode=body.mode
    )
    return Json(result)


@router.get("/{memory_id}", response_model=MemoryEnvelope)
async def get_memory(memory_id: str, ctx: Ctx, principal: Reader) -> Response:
    item = await ctx.db.read(service.get, principal.account_id, memory_id, _memory(ctx).model)
    return Json({"memory": item})


@router.patch("/{memory_id}", response_model=MemoryEnvelope)
async def patch_memory(memory_id: str, body: MemoryPatch, ctx: Ctx, principal: Writer) -> Response:
    """Change ``text``, ``metadata`` or ``ttlSeconds``; a new text is embedded again."""
    memory = _memory(ctx)
    embedded = None
    if body.text is not None:
        service.check_text(memory.limits, body.text)
        embedded = await memory.embed_text(body.text)
    item = await ctx.db.write(
        service.update, memory.limits, principal.account_id, memory_id, body, embedded, memory.model
    )
    return Json({"memory": item})


@router.delete("/{memory_id}", status_code=204)
async def delete_memory(memory_id: str, ctx: Ctx, principal: Writer) -> Response:
    await ctx.db.write(service.delete, principal.account_id, memory_id)
    return Response(status_code=204)
