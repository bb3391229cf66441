"""Request dependencies: the app context, the caller (auth + role), If-Match."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sessiond.auth import service as auth
from sessiond.auth.principal import Principal
from sessiond.context import AppContext
from sessiond.errors import Forbidden, Unauthorized


async def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[AppContext, Depends(get_ctx)]


def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


async def principal_for(request: Request, secret: str) -> Principal | None:
    """The caller a secret names (None: unknown or revoked), through the auth cache; the
    access log learns the account and key. Every route (git's too) authenticates here."""
    ctx: AppContext = request.app.state.ctx
    hit, principal = ctx.auth_cache.get(secret)
    if not hit:
        principal = await ctx.db.read_point(auth.authenticate, secret)
        ctx.auth_cache.put(secret, principal)
    if principal is not None:
        state = request.scope.setdefault("state", {})
        state["account_id"] = principal.account_id
        state["key_id"] = principal.key_id
    return principal


async def get_principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` or ``x-api-key: <key>``.

    (Read straight from the headers: this runs on every request. The OpenAPI document
    declares both schemes in ``http.openapi``.)
    """
    secret = _secret(request)
    if not secret:
        raise Unauthorized("missing API key; send Authorization: Bearer <key> or x-api-key: <key>")
    principal = await principal_for(request, secret)
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    return principal


def require(role: str):  # type: ignore[no-untyped-def]
    # One dependency, not one on top of get_principal: each level of dependencies costs
    # FastAPI's solver a pass on every request.
    async def dependency(request: Request) -> Principal:
        principal = await get_principal(request)
        if not principal.allows(role):
            raise Forbidden(f"this API key has role {principal.role}; this needs {role}")
        return principal

    return dependency


Reader = Annotated[Principal, Depends(get_principal)]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]


async def if_match(request: Request) -> int | str | None:
    """``If-Match: "3"`` / ``W/"3"`` / ``3`` → 3; ``*`` → ``"*"``; unparseable → ``""``."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip()
    if value == "*":
        return "*"
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if value.isascii() and value.isdigit() and len(value) < 19:  # fits a 64-bit integer
        return int(value)
    return ""


IfMatch = Annotated[int | str | None, Depends(if_match)]
