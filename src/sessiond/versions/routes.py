"""Checkpoint, restore, revert, unrevert and fork routes."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.errors import PushRejected, UpstreamError
from sessiond.files import commits, environment, remote
from sessiond.files import merge as merges
from sessiond.files.commits import Author
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import Json, created, page, with_etag
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import CHAR, NON_SPACE, ApiModel, Declared
from sessiond.pagination import Limit
from sessiond.sessions.models import JsonObject, Tag, Title
from sessiond.sessions.render import render_session
from sessiond.sessions.schemas import SessionEnvelope
from sessiond.versions import checkpoints, push
from sessiond.versions.fork import fork
from sessiond.versions.schemas import (
    CommitEnvelope,
    CommitList,
    CommitSummary,
    EnvironmentSpecEnvelope,
    GeneratedSpec,
    MergeEnvelope,
    PushEnvelope,
)

router = APIRouter(
    route_class=StrictRoute, prefix="/v1/sessions/{session_id}", tags=["versions"], responses=ERRORS
)


Scope = Annotated[StrictStr, Declared(enum=list(checkpoints.SCOPES))]
Label = Annotated[StrictStr, Declared(maxLength=checkpoints.LABEL_CHARS)]
Description = Annotated[StrictStr, Declared(maxLength=checkpoints.DESCRIPTION_CHARS)]


class CheckpointCreate(ApiModel):
    label: Label | None = None
    description: Description | None = None


class RestoreBody(ApiModel):
    checkpoint_id: StrictStr
    scope: Scope = "all"


class RevertBody(ApiModel):
    message_id: StrictStr
    scope: Scope = "all"


class ForkBody(ApiModel):
    # a checkpoint or a message, not both
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["checkpointId", "messageId"],
                "properties": {"checkpointId": {"type": "string"}, "messageId": {"type": "string"}},
            }
        }
    )

    checkpoint_id: StrictStr | None = None
    message_id: StrictStr | None = None
    title: Title | None = None
    tags: list[Tag] | None = None


class CheckpointOut(BaseModel):
    id: str
    sessionId: str
    label: str | None
    description: str | None
    tree: str
    messageId: str | None
    auto: bool
    createdAt: str


class CheckpointEnvelope(BaseModel):
    checkpoint: CheckpointOut


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointOut]
    nextCursor: str | None


class RestoreOut(SessionEnvelope):
    undoCheckpointId: str


@router.post("/checkpoints", status_code=201, response_model=CheckpointEnvelope)
async def create_checkpoint(
    session_id: str,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
    body: CheckpointCreate | None = None,
) -> Response:
    """Record files, conversation, context and tasks now (a handful of ids, no copies)."""
    spec = body or CheckpointCreate()

    def create(tx: Tx) -> tuple[int, Any]:
        checkpoint = checkpoints.create(
            tx,
            principal.account_id,
            session_id,
            label=spec.label,
            description=spec.description,
            if_match=if_match,
        )
        return 201, {"checkpoint": checkpoint}

    return await created(request, ctx, principal, create)


@router.get("/checkpoints", response_model=CheckpointList)
async def list_checkpoints(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """Newest first (automatic ones included: ``auto: true``)."""
    return await page(
        ctx,
        "checkpoints",
        checkpoints.list_page,
        principal.account_id,
        session_id,
        limit=limit,
        cursor=cursor,
    )


@router.get("/checkpoints/{checkpoint_id}", response_model=CheckpointEnvelope)
async def get_checkpoint(
    session_id: str, checkpoint_id: str, ctx: Ctx, principal: Reader
) -> Response:
    checkpoint = await ctx.db.read(checkpoints.get, principal.account_id, session_id, checkpoint_id)
    return Json({"checkpoint": checkpoint})


@router.post("/restore", response_model=RestoreOut)
async def restore(
    session_id: str, body: RestoreBody, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Back to a checkpoint (``scope``: all | files | conversation). The state before is
    recorded first: restore ``undoCheckpointId`` to undo."""

    def run(tx: Tx) -> tuple[dict[str, Any], str]:
        row, undo = checkpoints.restore(
            tx,
            principal.account_id,
            session_id,
            body.checkpoint_id,
            body.scope,
            if_match=if_match,
        )
        return render_session(row, tx.now), undo

    session, undo = await ctx.db.write(run)
    return with_etag({"session": session, "undoCheckpointId": undo}, session)


@router.post("/revert", response_model=SessionEnvelope)
async def revert(
    session_id: str, body: RevertBody, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """The state just before ``messageId`` (which leaves the conversation)."""

    def run(tx: Tx) -> dict[str, Any]:
        row = checkpoints.revert(
            tx,
            principal.account_id,
            session_id,
            body.message_id,
            body.scope,
            if_match=if_match,
        )
        return render_session(row, tx.now)

    session = await ctx.db.write(run)
    return with_etag({"session": session}, session)


@router.post("/unrevert", response_model=SessionEnvelope)
async def unrevert(session_id: str, ctx: Ctx, principal: Writer, if_match: IfMatch) -> Response:
    """Undo the last revert."""

    def run(tx: Tx) -> dict[str, Any]:
        row = checkpoints.unrevert(tx, principal.account_id, session_id, if_match=if_match)
        return render_session(row, tx.now)

    session = await ctx.db.write(run)
    return with_etag({"session": session}, session)


@router.post("/fork", status_code=201, response_model=SessionEnvelope)
async def fork_session(
    session_id: str, request: Request, ctx: Ctx, principal: Writer, body: ForkBody | None = None
) -> Response:
    """A new session from this one's state (now, a checkpoint, or just before a message),
    with ``parentId`` and ``forkedFrom``. Nothing is copied."""
    spec = body or ForkBody()
    limits = ctx.settings.limits

    def create(tx: Tx) -> tuple[int, Any]:
        child = fork(
            tx,
            limits,
            principal.account_id,
            session_id,
            checkpoint_id=spec.checkpoint_id,
            message_id=spec.message_id,
            title=spec.title,
            tags=spec.tags,
        )
        return 201, {"session": render_session(child, tx.now)}

    return await created(request, ctx, principal, create)


class CommitBody(ApiModel):
    # not blank (omit it to have one generated)
    message: (
        Annotated[
            StrictStr,
            Declared(pattern=f"^{CHAR}*{NON_SPACE}{CHAR}*$", maxLength=commits.MESSAGE_CHARS),
        ]
        | None
    ) = None
    author: Author | None = None
    # push the commit to session.repo (to ``branch``, else the last one, else
    # sessiond/<session id>)
    push: StrictBool = False
    branch: Annotated[StrictStr, Declared(minLength=1, maxLength=200)] | None = None


class PushBody(ApiModel):
    branch: Annotated[StrictStr, Declared(minLength=1, maxLength=200)] | None = None


async def _push(ctx: AppContext, account_id: str, session_id: str, branch: str | None) -> Any:
    """Push the session's last commit; 409 ``push_rejected``, 502 ``upstream_error``."""
    if branch is not None:
        remote.check_branch(branch)
    repo, head, history = await ctx.db.read(push.prepare, account_id, session_id)
    target = branch or push.default_branch(session_id, repo)
    settings = ctx.settings
    try:
        pushed = await asyncio.to_thread(
            remote.push,
            repo["url"],
            history,
            head,
            target,
            store=settings.git_credentials,
            timeout=settings.git_timeout_seconds,
        )
    except remote.PushRefused as e:
        raise PushRejected(f"{e} (the commit stays in the session; push again)") from None
    except remote.RemoteError as e:
        raise UpstreamError(f"pushing to {repo['url']} failed: {e}") from None
    return await ctx.db.write(push.record, account_id, session_id, pushed)


@router.post("/generateCommitSummary", response_model=CommitSummary)
async def generate_commit_summary(session_id: str, ctx: Ctx, principal: Reader) -> Response:
    """A title and body for the changes since the last commit; nothing is written."""
    result = await ctx.db.read(commits.generate_summary, principal.account_id, session_id)
    return Json(result)


@router.post("/commit", status_code=201, response_model=CommitEnvelope)
async def commit(
    session_id: str,
    request: Request,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
    body: CommitBody | None = None,
) -> Response:
    """Commit the working tree on the session's branch (no message → generated);
    ``push: true`` then pushes it to the session's repository."""
    spec = body or CommitBody()
    if spec.branch is not None:
        remote.check_branch(spec.branch)

    def create(tx: Tx) -> tuple[int, Any]:
        out = commits.create(
            tx,
            principal.account_id,
            session_id,
            message=spec.message,
            author=spec.author,
            if_match=if_match,
        )
        return 201, {"commit": out}

    response = await created(request, ctx, principal, create)
    if not spec.push:
        return response
    pushed = await _push(ctx, principal.account_id, session_id, spec.branch)
    out = json.loads(bytes(response.body))
    return Json({**out, "push": pushed}, status_code=201)


@router.post("/push", response_model=PushEnvelope)
async def push_commit(
    session_id: str, ctx: Ctx, principal: Writer, body: PushBody | None = None
) -> Response:
    """Push the session's last commit to its repository again (after a rejection, or
    to another branch)."""
    spec = body or PushBody()
    return Json({"push": await _push(ctx, principal.account_id, session_id, spec.branch)})


@router.get("/commits", response_model=CommitList)
async def list_commits(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """The session's commits, newest first."""
    return await page(
        ctx,
        "commits",
        commits.list_page,
        principal.account_id,
        session_id,
        limit=limit,
        cursor=cursor,
    )


class EnvironmentSpecBody(ApiModel):
    environment_spec: JsonObject


@router.get("/environmentSpec", response_model=EnvironmentSpecEnvelope)
async def get_environment_spec(session_id: str, ctx: Ctx, principal: Reader) -> Response:
    spec = await ctx.db.read(environment.get, principal.account_id, session_id)
    return Json({"environmentSpec": spec})


@router.put("/environmentSpec", response_model=EnvironmentSpecEnvelope)
async def put_environment_spec(
    session_id: str,
    body: EnvironmentSpecBody,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
) -> Response:
    """Replace the stored environment spec (a JSON object)."""
    spec = await ctx.db.write(
        environment.put,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        body.environment_spec,
        if_match=if_match,
    )
    return Json({"environmentSpec": spec})


@router.post("/generateEnvironmentSpec", response_model=GeneratedSpec)
async def generate_environment_spec(session_id: str, ctx: Ctx, principal: Reader) -> Response:
    """Infer language, versions, package manager, packages, setup and test commands from
    the files, with the files each field came from; nothing is written."""
    result = await ctx.db.read(environment.generate, principal.account_id, session_id)
    return Json(result)


Strategy = Annotated[StrictStr, Declared(enum=list(merges.STRATEGIES))]


class MergeBody(ApiModel):
    target_session_id: StrictStr | None = None
    strategy: Strategy = "fail"
    message: StrictStr | None = None


class MergeFromBody(ApiModel):
    source_session_id: StrictStr
    strategy: Strategy = "fail"
    message: StrictStr | None = None


merge_router = APIRouter(
    route_class=StrictRoute, prefix="/v1/sessions", tags=["versions"], responses=ERRORS
)


@merge_router.post("/{session_id}:merge", response_model=MergeEnvelope)
async def merge_into(
    session_id: str, ctx: Ctx, principal: Writer, body: MergeBody | None = None
) -> Response:
    """Merge this session's changes since the merge base into the target (default: its
    parent). ``strategy``: fail (409 ``merge_conflict``, nothing written) | ours | theirs |
    markers."""
    spec = body or MergeBody()
    result = await ctx.db.write(
        merges.merge,
        principal.account_id,
        session_id,
        spec.target_session_id,
        spec.strategy,
        spec.message,
    )
    return Json({"merge": result})


@merge_router.post("/{session_id}:mergeFrom", response_model=MergeEnvelope)
async def merge_from(session_id: str, body: MergeFromBody, ctx: Ctx, principal: Writer) -> Response:
    """Merge another session into this one (``ours`` = this session)."""
    result = await ctx.db.write(
        merges.merge,
        principal.account_id,
        body.source_session_id,
        session_id,
        body.strategy,
        body.message,
    )
    return Json({"merge": result})
