"""``/v1/sessions/{id}/git/...``: git smart HTTP with Basic auth (password = API key)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope, Send

from sessiond.auth.principal import Principal
from sessiond.errors import NotFound
from sessiond.files import githttp
from sessiond.http.deps import Ctx, _secret, principal_for
from sessiond.http.errors import error_response
from sessiond.http.routing import StrictRoute, raw_body

router = APIRouter(route_class=StrictRoute, tags=["git"])

CHALLENGE = {"WWW-Authenticate": 'Basic realm="sessiond"'}


class GitResponse(Response):
    """Runs dulwich's WSGI app (through a2wsgi) for this one request.

    The ASGI server has already decoded a ``Transfer-Encoding: chunked`` body (git sends
    pushes over ``http.postBuffer``, 1 MiB, that way); the header is dropped so dulwich
    does not decode it a second time. Without it and without ``Content-Length``, dulwich
    reads the body to its end (the edge middleware caps it at the file limit).
    """

    def __init__(self, app: Any, path: str) -> None:
        super().__init__()
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"transfer-encoding"]
        inner = dict(
            scope, path=self.path, raw_path=self.path.encode(), root_path="", headers=headers
        )
        await self.app(inner, receive, send)


def _basic_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or decoded.partition(":")[0] or None
    return _secret(request)


async def _principal(request: Request) -> Principal | None:
    secret = _basic_secret(request)
    return await principal_for(request, secret) if secret else None


@router.api_route(
    "/v1/sessions/{session_id}/git/{rest:path}", methods=["GET", "POST"], include_in_schema=False
)
@raw_body
async def git(session_id: str, rest: str, request: Request, ctx: Ctx) -> Response:
    """``git clone|fetch|pull|push https://<server>/v1/sessions/<id>/git`` with the API key
    as the password. ``main`` is the working tree; only ``main`` can be pushed."""
    principal = await _principal(request)
    if principal is None:
        return error_response(
            401,
            "git needs credentials: use any user name and an API key as the password",
            "unauthorized",
            headers=CHALLENGE,
        )
    push = rest.endswith("git-receive-pack") or (
        request.query_params.get("service") == "git-receive-pack"
    )
    if push and not principal.allows("write"):
        return error_response(
            403, f"this API key has role {principal.role}; pushing needs write", "forbidden"
        )
    try:
        head, unsaved = await ctx.db.write(githttp.prepare, principal.account_id, session_id)
    except NotFound:
        return error_response(404, "repository not found", "not_found")
    repo = await ctx.db.read(githttp.load, principal.account_id, head, unsaved)
    if push:
        githttp.attach_hook(ctx.db, principal.account_id, session_id, repo)
    return GitResponse(githttp.wsgi_app(repo), "/" + rest)
