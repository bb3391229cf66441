"""Sandbox routes: exec, hibernate, restore."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.http.deps import Ctx, Writer
from sessiond.http.respond import Json, with_etag
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.sandbox import exec as execution
from sessiond.sandbox.manager import Sandboxes
from sessiond.sandbox.models import ExecBody, ExecResult
from sessiond.sessions import kernel
from sessiond.sessions.render import render_session
from sessiond.sessions.schemas import SessionEnvelope

router = APIRouter(route_class=StrictRoute, tags=["sandbox"], responses=ERRORS)
SESSION = "/v1/sessions/{session_id}"


def _sandboxes(ctx: AppContext) -> Sandboxes:
    assert ctx.sandboxes is not None
    return ctx.sandboxes


@router.post(SESSION + "/exec", response_model=ExecResult)
async def exec_command(session_id: str, body: ExecBody, ctx: Ctx, principal: Writer) -> Response:
    """Run a command in the session's sandbox (restored first if it hibernated); the
    files it changed are saved into the working tree when it ends."""
    sandboxes = _sandboxes(ctx)
    argv, env, timeout = body.argv(), body.environment(), body.timeout()
    stdin = body.stdin.encode("utf-8") if body.stdin is not None else None
    account_id = principal.account_id
    # A missing session is a 404 from ``use`` (its first read); the sync restarts the
    # idle clock in its own transaction: one write per exec when nothing changed.
    async with sandboxes.use(account_id, session_id, touch=False) as layout:
        cwd = execution.working_dir(layout.work, body.cwd)
        full_env = {"PATH": execution.BASE_PATH, "LANG": "C.UTF-8", **layout.env(), **env}
        outcome = await execution.run(
            sandboxes.confinement,
            sandboxes.command(layout, argv, readable=[], cwd=cwd),
            env=full_env,
            cwd=cwd,
            stdin=stdin,
            timeout=timeout,
            cap=ctx.settings.limits.exec_output_bytes,
        )
        synced = await sandboxes.sync(account_id, session_id, "exec", touch=True)
    return Json({**outcome.render(), "filesChanged": synced.changed, "skipped": synced.skipped})


async def _session(ctx: AppContext, account_id: str, session_id: str) -> Response:
    def read(tx: Tx) -> dict[str, Any]:
        return render_session(kernel.get_row(tx, account_id, session_id), tx.now)

    out = await ctx.db.read(read)
    return with_etag({"session": out}, out)


@router.post(SESSION + "/sandbox:hibernate", response_model=SessionEnvelope)
async def hibernate(session_id: str, ctx: Ctx, principal: Writer) -> Response:
    """Stop the agent, save the sandbox into the working tree and remove it now. A
    sandbox that is not active is left as it is; one in use by a turn or an exec → 409
    ``session_busy``."""
    await ctx.db.read(kernel.require_exists, principal.account_id, session_id)
    await _sandboxes(ctx).hibernate(principal.account_id, session_id, reason="requested")
    return await _session(ctx, principal.account_id, session_id)


@router.post(SESSION + "/sandbox:restore", response_model=SessionEnvelope)
async def restore(session_id: str, ctx: Ctx, principal: Writer) -> Response:
    """Write the sandbox from the working tree now (a no-op when it is active)."""
    await _sandboxes(ctx).ensure(principal.account_id, session_id)
    return await _session(ctx, principal.account_id, session_id)
