"""``/v1/me`` and ``/v1/keys`` (admin)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, StrictStr

from sessiond.auth import service as auth
from sessiond.db.executor import Tx
from sessiond.http.deps import Admin, Ctx, Reader
from sessiond.http.respond import Json, created, page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import CHAR, NON_SPACE, SPACES, ApiModel, Declared
from sessiond.pagination import Limit

router = APIRouter(route_class=StrictRoute, prefix="/v1", tags=["identity"], responses=ERRORS)


class KeyCreate(ApiModel):
    # 1 to 200 characters once stripped (``auth.service.create_key``)
    name: Annotated[
        StrictStr,
        Declared(pattern=f"^[{SPACES}]*{NON_SPACE}(?:{CHAR}{{0,198}}{NON_SPACE})?[{SPACES}]*$"),
    ]
    role: Literal["admin", "write", "read"]


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    prefix: str
    createdAt: str
    revokedAt: str | None


class KeyCreated(BaseModel):
    key: KeyOut
    secret: str


class KeyList(BaseModel):
    keys: list[KeyOut]
    nextCursor: str | None


class AccountOut(BaseModel):
    id: str
    name: str


class MeKey(BaseModel):
    id: str
    name: str
    role: str
    prefix: str


class Me(BaseModel):
    account: AccountOut
    key: MeKey


@router.get("/me", response_model=Me)
async def me(principal: Reader) -> Response:
    return Json(
        {
            "account": {"id": principal.account_id, "name": principal.account_name},
            "key": {
                "id": principal.key_id,
                "name": principal.key_name,
                "role": principal.role,
                "prefix": principal.prefix,
            },
        }
    )


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(request: Request, body: KeyCreate, ctx: Ctx, principal: Admin) -> Response:
    """Create a key in the caller's account. The secret is in this response only."""

    def create(tx: Tx) -> tuple[int, Any]:
        row, secret = auth.create_key(tx, principal.account_id, body.name, body.role)
        return 201, {"key": auth.render_key(row), "secret": secret}

    return await created(request, ctx, principal, create)


@router.get("/keys", response_model=KeyList)
async def list_keys(
    ctx: Ctx, principal: Admin, limit: Limit = None, cursor: str | None = None
) -> Response:
    return await page(ctx, "keys", auth.key_page, principal.account_id, limit=limit, cursor=cursor)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, ctx: Ctx, principal: Admin) -> Response:
    """Revoke a key; requests with it answer 401 from now on."""
    await ctx.db.write(auth.revoke_key, principal.account_id, key_id)
    ctx.auth_cache.clear()
    return Response(status_code=204)
