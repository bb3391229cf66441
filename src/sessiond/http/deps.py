"""Request dependencies: the app context, the caller (auth + role), If-Match, JSON bodies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sessiond.auth import service as auth
from sessiond.auth.principal import Principal
from sessiond.context import AppContext
from sessiond.errors import Forbidden, Unauthorized, UnsupportedMediaType

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="`x-api-key: <API key>`")


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_principal(
    request: Request,
    ctx: Ctx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    secret = bearer.credentials if bearer is not None else api_key
    if not secret:
        raise Unauthorized("missing API key; send Authorization: Bearer <key> or x-api-key: <key>")
    secret_hash = auth.hash_secret(secret)
    hit, principal = ctx.auth_cache.get(secret_hash)
    if not hit:
        principal = await ctx.db.read(auth.authenticate, secret)
        ctx.auth_cache.put(secret_hash, principal)
    if principal is None:
        raise Unauthorized("unknown or revoked API key")
    state = request.scope.setdefault("state", {})
    state["account_id"] = principal.account_id
    state["key_id"] = principal.key_id
    return principal


def require(role: str):  # type: ignore[no-untyped-def]
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.allows(role):
            raise Forbidden(f"this API key has role {principal.role}; this needs {role}")
        return principal

    return dependency


Reader = Annotated[Principal, Depends(get_principal)]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def if_match(request: Request) -> int | str | None:
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
    return int(value) if value.isdigit() else ""


IfMatch = Annotated[int | str | None, Depends(if_match)]


async def json_body(request: Request) -> None:
    """415 unless a request body, if any, is declared as JSON."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    ctype = request.headers.get("content-type")
    if ctype is None:
        return
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        return
    if not await request.body():
        return
    raise UnsupportedMediaType(f"Content-Type {mime} is not accepted here; send application/json")
