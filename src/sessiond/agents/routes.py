"""Agent routes: the registry, prompts and turns, cancel, mode."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response

from sessiond.agents import registry as agents
from sessiond.agents import turns
from sessiond.agents.models import (
    AgentEnvelope,
    AgentList,
    CancelBody,
    Cancelled,
    ModeBody,
    PromptBody,
    TurnEnvelope,
    TurnList,
)
from sessiond.agents.registry import Registry
from sessiond.agents.runner import Runner
from sessiond.agents.wait import until_ended
from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.errors import NotFound, invalid
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created, page, with_etag
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared
from sessiond.pagination import Limit
from sessiond.sessions import kernel
from sessiond.sessions import service as sessions
from sessiond.sessions.models import SessionPatch
from sessiond.sessions.render import render_session
from sessiond.sessions.schemas import SessionEnvelope

router = APIRouter(route_class=StrictRoute, tags=["agents"], responses=ERRORS)
SESSION = "/v1/sessions/{session_id}"
MAX_WAIT_SECONDS = 60


def _parts(ctx: AppContext) -> tuple[Registry, Runner]:
    assert ctx.registry is not None and ctx.runner is not None
    return ctx.registry, ctx.runner


def check_agent(ctx: AppContext, name: str | None) -> None:
    """An ``agent`` given on create or PATCH must be configured (422 otherwise)."""
    registry, _ = _parts(ctx)
    if name is not None and registry.get(name) is None:
        known = ", ".join(a.name for a in registry.all()) or "none are configured"
        raise invalid("agent", f"no agent {name} on this server ({known})")


@router.get("/v1/agents", response_model=AgentList)
async def list_agents(ctx: Ctx, principal: Reader) -> Response:
    """The configured agents; ``command`` and ``env`` for admin keys only."""
    registry, _ = _parts(ctx)
    configured = registry.all()
    info = await ctx.db.read(agents.announced, [a.name for a in configured])
    admin = principal.role == "admin"
    out = [agents.describe(a, info.get(a.name), admin=admin) for a in configured]
    assert ctx.sandboxes is not None
    return Json({"agents": out, "sandbox": ctx.sandboxes.describe(), "error": registry.error})


@router.get("/v1/agents/{name}", response_model=AgentEnvelope)
async def get_agent(name: str, ctx: Ctx, principal: Reader) -> Response:
    registry, _ = _parts(ctx)
    agent = registry.get(name)
    if agent is None:
        raise NotFound(f"agent {name} is not configured on this server (GET /v1/agents)")
    info = await ctx.db.read(agents.announced, [name])
    admin = principal.role == "admin"
    return Json({"agent": agents.describe(agent, info.get(name), admin=admin)})


@router.post(SESSION + "/prompt", status_code=202, response_model=TurnEnvelope)
async def prompt(
    session_id: str,
    body: PromptBody,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Queue a turn: the prompt is appended as a user message at once (with its
    checkpoint), then the session's agent runs it. ``Idempotency-Key`` makes retries safe."""
    _, runner = _parts(ctx)
    message = body.message()
    interrupted: list[str] = []

    def create(tx: Tx) -> tuple[int, Any]:
        turn, stopped = turns.create(
            tx,
            ctx.settings.limits,
            principal.account_id,
            session_id,
            message,
            multitask=body.multitask,
            mode=body.mode,
            if_match=if_match,
        )
        interrupted.extend(stopped)
        return 202, {"turn": turn}

    response = await created(request, ctx, principal, create)
    runner.cancel(interrupted)
    runner.wake(principal.account_id, session_id)
    return response


@router.get(SESSION + "/turns", response_model=TurnList)
async def list_turns(
    session_id: str, ctx: Ctx, principal: Reader, limit: Limit = None, cursor: str | None = None
) -> Response:
    """The session's turns, newest first."""
    return await page(
        ctx, "turns", turns.list_page, principal.account_id, session_id, limit=limit, cursor=cursor
    )


@router.get(SESSION + "/turns/{turn_id}", response_model=TurnEnvelope)
async def get_turn(
    session_id: str,
    turn_id: str,
    ctx: Ctx,
    principal: Reader,
    wait: Annotated[int | None, Declared(minimum=0, maximum=MAX_WAIT_SECONDS)] = None,
) -> Response:
    """The turn. ``?wait=N`` (0 to 60 s) long-polls until it ends."""
    if wait is not None and not 0 <= wait <= MAX_WAIT_SECONDS:
        raise invalid("wait", f"must be between 0 and {MAX_WAIT_SECONDS} seconds")
    if not wait:
        turn = await ctx.db.read(turns.get, principal.account_id, session_id, turn_id)
    else:
        turn = await until_ended(ctx.db, ctx.bus, principal.account_id, session_id, turn_id, wait)
    return Json({"turn": turn})


@router.post(SESSION + "/cancel", response_model=Cancelled)
async def cancel(
    session_id: str, ctx: Ctx, principal: Writer, body: CancelBody | None = None
) -> Response:
    """Cancel the running turn (ACP ``session/cancel``; stopped after 10 s); ``queued:
    true`` drops the queued turns too. Nothing running → an empty list."""
    _, runner = _parts(ctx)
    running, dropped = await ctx.db.write(
        turns.request_cancel,
        principal.account_id,
        session_id,
        queued=body.queued if body is not None else False,
    )
    runner.cancel(running)
    return Json({"cancelled": running + dropped})


@router.put(SESSION + "/mode", response_model=SessionEnvelope)
async def set_mode(
    session_id: str, body: ModeBody, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Set the session's mode; forwarded to a running agent (``session/set_mode``). A mode
    the agent did not announce → 422."""
    _, runner = _parts(ctx)
    session = await ctx.db.read(kernel.get_row, principal.account_id, session_id)
    modes = runner.modes(session_id)
    if modes is None and session["agent"]:
        info = await ctx.db.read(agents.announced, [session["agent"]])
        modes = info.get(session["agent"], {}).get("modes")
    if modes is not None and body.mode not in [m.get("id") for m in modes]:
        known = ", ".join(str(m.get("id")) for m in modes)
        raise invalid("mode", f"the agent announced the modes {known}")
    patch = SessionPatch.model_validate({"mode": body.mode})

    def run(tx: Tx) -> dict[str, Any]:
        row = sessions.update(
            tx, ctx.settings.limits, principal.account_id, session_id, patch, if_match=if_match
        )
        return render_session(row, tx.now)

    out = await ctx.db.write(run)
    await runner.set_mode(session_id, body.mode)
    return with_etag({"session": out}, out)
