"""The ACP methods ``/api/acp`` answers, on top of the ``/v1`` services.

Each handler takes the app context, the caller and the request's params, and returns
the result object (camelCase, ACP's wire form) or raises ``RpcError`` /
``SessiondError``. Methods that write need a write key.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from sessiond import idempotency
from sessiond.acp.rpc import METHOD_NOT_FOUND, RpcError, params_error
from sessiond.agents import registry as agents
from sessiond.agents import turns
from sessiond.agents.wait import until_ended
from sessiond.approvals import service as approvals
from sessiond.auth.principal import Principal
from sessiond.context import AppContext
from sessiond.conversation.models import MessageCreate
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.errors import Forbidden, NotFound
from sessiond.ids import iso
from sessiond.sessions import kernel
from sessiond.sessions import service as sessions
from sessiond.sessions.models import SessionCreate, SessionPatch
from sessiond.sessions.render import render_session

PROTOCOL_VERSION = 1
WAIT_STEP_SECONDS = 60
Handler = Callable[[AppContext, Principal, dict[str, Any]], Awaitable[Any]]
WRITES = {"session/new", "session/prompt", "session/cancel", "session/set_mode"}


def _str(params: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise params_error(f"{name} must be a non-empty string")
    return value


async def _modes(ctx: AppContext, session: dict[str, Any]) -> dict[str, Any] | None:
    """ACP ``modes`` of the session's agent: what it announced when it last started."""
    name = session.get("agent")
    if not name:
        return None
    assert ctx.runner is not None
    modes = ctx.runner.modes(session["id"])
    if modes is None:
        info = await ctx.db.read(agents.announced, [name])
        modes = info.get(name, {}).get("modes")
    if not modes:
        return None
    current = session.get("mode") or (modes[0].get("id") if modes else None)
    return {"currentModeId": current, "availableModes": modes}


async def initialize(ctx: AppContext, who: Principal, params: dict[str, Any]) -> Any:
    from sessiond.app import VERSION

    return {
        "protocolVersion": PROTOCOL_VERSION,
        "agentCapabilities": {
            "loadSession": True,
            "promptCapabilities": {"image": False, "audio": False, "embeddedContext": False},
        },
        "agentInfo": {"name": "sessiond", "version": VERSION},
        "authMethods": [],
    }


async def new_session(ctx: AppContext, who: Principal, params: dict[str, Any]) -> Any:
    """A sessiond session bound to agent ``provider`` (default: the first configured)."""
    assert ctx.registry is not None
    provider = _str(params, "provider", required=False)
    if provider is None:
        configured = ctx.registry.all()
        if not configured:
            raise params_error("no agent is configured on this server (agents.toml)")
        provider = configured[0].name
    elif ctx.registry.get(provider) is None:
        known = ", ".join(a.name for a in ctx.registry.all()) or "none"
        raise params_error(f"no agent {provider} on this server ({known})")
    body: dict[str, Any] = {"agent": provider}
    for name, field in (
        ("workspaceId", "workspaceId"),
        ("name", "title"),
        ("modeId", "mode"),
        ("model", "model"),
    ):
        if params.get(name) is not None:
            body[field] = params[name]
    try:
        spec = SessionCreate.model_validate(body)
    except ValueError as e:
        raise params_error(str(e).splitlines()[0]) from None
    key = params.get("idempotencyKey")
    if key is not None and not isinstance(key, str):
        raise params_error("idempotencyKey must be a string")

    def create(tx: Tx) -> tuple[int, Any]:
        row = sessions.create(tx, ctx.settings.limits, who.account_id, spec)
        return 201, render_session(row, tx.now)

    outcome = await idempotency.run(
        ctx.db,
        account_id=who.account_id,
        key=key,
        fingerprint=idempotency.request_hash("ACP", "session/new", json.dumps(body).encode()),
        ttl_seconds=ctx.settings.idempotency_ttl_seconds,
        create=create,
    )
    session = json.loads(outcome.body)
    return {"sessionId": session["id"], "modes": await _modes(ctx, session)}


async def _session(ctx: AppContext, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
    sid = _str(params, "sessionId")
    assert sid is not None

    def read(tx: Tx) -> dict[str, Any]:
        return render_session(kernel.get_row(tx, who.account_id, sid), tx.now)

    return await ctx.db.read(read)


async def load_session(ctx: AppContext, who: Principal, params: dict[str, Any]) -> Any:
    """The session exists: its history is on ``GET /api/acp?sessionId=`` (from the start)."""
    session = await _session(ctx, who, params)
    return {"modes": await _modes(ctx, session)}


async def list_sessions(ctx: AppContext, who: Principal, params: dict[str, Any]) -> Any:
    workspace = _str(params, "workspaceId", required=False)
    cursor = params.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise params_error("cursor must be a string")
    s = t.sessions.c

    def read(tx: Tx) -> tuple[list[Any], str | None]:
        q = sa.select(s.id, s.title, s.updated_at).where(
            s.account_id == who.account_id, s.deleted_at.is_(None)
        )
        if workspace is not None:
            q = q.where(s.workspace_id == workspace)
        if cursor:
            q = q.where(s.id < cursor)
        rows = list(tx.conn.execute(q.order_by(s.id.desc()).limit(101)).all())
        more = len(rows) > 100
        return rows[:100], (rows[99].id if more else None)

    rows, next_cursor = await ctx.db.read(read)
    base = ctx.settings.sandboxes_dir()
    return {
        "sessions": [
            {
                "sessionId": r.id,
                "cwd": str(base / r.id / "work"),
                "title": r.title,
                "updatedAt": iso(r.updated_at),
            }
            for r in rows
        ],
        "nextCursor": next_cursor,
    }


def _prompt_message(params: dict[str, Any]) -> MessageCreate:
    prompt = params.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise params_error("prompt must be a non-empty list of content blocks")
    parts = []
    for block in prompt:
        if not isinstance(block, dict) or block.get("type") != "text":
            raise params_error("only text content blocks are accepted")
        if not isinstance(block.get("text"), str):
            raise params_error("a text block needs text")
        parts.append({"type": "text", "text": block["text"]})
    return MessageCreate.model_validate({"role": "user", "parts": parts})


async def prompt(ctx: AppContext, who: Principal, params: dict[str, Any]) -> Any:
    """Queue the prompt as a turn and answer when it ends (updates flow on the stream)."""
    sid = _str(params, "sessionId")
    assert sid is not None and ctx.runner is not None
    message = _prompt_message(params)
    turn, stopped = await ctx.db.write(
        turns.create,
        ctx.settings.limits,
        who.account_id,
        sid,
        message,
        multitask="enqueue",
        mode=None,
    )
    ctx.runner.cancel(stopped)
    ctx.runner.wake(who.account_id, sid)
    while turn["status"] not in turns.ENDED:
        turn = await until_ended(
            ctx.db, ctx.bus, who.account_id, sid, turn["id"], WAIT_STEP_SECONDS
        )
    if turn["status"] == "failed":
        raise RpcError(
            -32603, turn.get("error") or "the turn failed", "turn_failed", {"turnId": turn["id"]}
        )
    reason = "cancelled" if turn["status"] == "cancelled" else (turn["stopReason"] or "end_turn")
    return {"stopReason": reason}


async def cancel(ctx: AppContext, who: Principal, params: dict[str, Any]) -> Any:
    sid = _str(params, "sessionId")
    assert sid is not None and ctx.runner is not None
    running, _ = await ctx.db.write(turns.request_cancel, who.account_id, sid, queued=False)
    ctx.runner.cancel(running)
    return None


async def set_mode(ctx: AppContext, who: Principal, params: dict[str, Any]) -> Any:
    sid = _str(params, "sessionId")
    mode = _str(params, "modeId")
    assert sid is not None and mode is not None and ctx.runner is not None
    session = await _session(ctx, who, params)
    known = await _modes(ctx, session)
    if known is not None and mode not in [m.get("id") for m in known["availableModes"]]:
        raise params_error(f"the agent announced no mode {mode}")
    patch = SessionPatch.model_validate({"mode": mode})

    def write(tx: Tx) -> None:
        sessions.update(tx, ctx.settings.limits, who.account_id, sid, patch)

    await ctx.db.write(write)
    await ctx.runner.set_mode(sid, mode)
    return {}


METHODS: dict[str, Handler] = {
    "initialize": initialize,
    "session/new": new_session,
    "session/load": load_session,
    "session/list": list_sessions,
    "session/prompt": prompt,
    "session/cancel": cancel,
    "session/set_mode": set_mode,
}


async def call(ctx: AppContext, who: Principal, method: str, params: dict[str, Any]) -> Any:
    handler = METHODS.get(method)
    if handler is None:
        raise RpcError(METHOD_NOT_FOUND, f"no method {method}", "method_not_found")
    if method in WRITES and not who.allows("write"):
        raise Forbidden(f"{method} needs a write key")
    return await handler(ctx, who, params)


async def answer_permission(
    ctx: AppContext, who: Principal, approval_id: Any, result: Any, error: Any
) -> None:
    """The client's JSON-RPC response to ``session/request_permission``: decide the
    approval (``selected`` → that option, ``cancelled`` or an error → the first reject)."""
    if not who.allows("write"):
        raise Forbidden("answering a permission request needs a write key")
    if not isinstance(approval_id, str):
        raise NotFound("no such permission request")

    def find(tx: Tx) -> tuple[str, list[Any]]:
        a = t.approvals.c
        row = tx.conn.execute(
            sa.select(a.session_id, a.options).where(
                a.id == approval_id, a.account_id == who.account_id
            )
        ).first()
        if row is None:
            raise NotFound(f"no permission request {approval_id}")
        return row.session_id, row.options or []

    sid, options = await ctx.db.read(find)
    outcome = (result or {}).get("outcome") if isinstance(result, dict) else None
    option_id = None
    verdict = "denied"
    if error is None and isinstance(outcome, dict) and outcome.get("outcome") == "selected":
        option_id = outcome.get("optionId")
        kinds = {o.get("id"): o.get("kind") for o in options if isinstance(o, dict)}
        if option_id not in kinds:
            raise params_error(f"optionId must be one of {sorted(k for k in kinds if k)}")
        verdict = "granted" if str(kinds[option_id]).startswith("allow") else "denied"
    await ctx.db.write(
        approvals.decide,
        who.account_id,
        sid,
        approval_id,
        verdict,
        comment=None,
        decided_by=who.key_id,
        option_id=option_id,
    )
