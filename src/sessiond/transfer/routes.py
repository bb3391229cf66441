"""Export and import routes: ``GET .../export`` streams an archive, ``POST
/v1/sessions:import`` streams one in (its own size limit) and creates a session from it."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Iterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from sessiond import idempotency
from sessiond.db.executor import Tx
from sessiond.errors import PayloadTooLarge
from sessiond.http.deps import Ctx, Reader, Writer
from sessiond.http.routing import StrictRoute, streamed_body
from sessiond.http.schemas import ERRORS
from sessiond.sessions.render import render_session
from sessiond.sessions.schemas import SessionEnvelope
from sessiond.transfer import archive, export, importer

router = APIRouter(route_class=StrictRoute, tags=["transfer"], responses=ERRORS)
CHUNK = 64 * 1024


@router.get(
    "/v1/sessions/{session_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the archive (docs/export.md): a gzip tar of manifest.json, "
            "objects.pack and, with events=true, events.jsonl",
            "content": {archive.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def export_session(
    session_id: str, ctx: Ctx, principal: Reader, events: bool = False
) -> Response:
    """The session as one archive file: every row, every branch, every git object it
    reaches; ``events=true`` adds its event log. Read in one transaction."""
    out = await ctx.db.read(
        export.build,
        principal.account_id,
        session_id,
        events=events,
        spool_bytes=ctx.settings.tuning.snapshot_spool_bytes,
    )
    size = out.seek(0, 2)
    out.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while block := out.read(CHUNK):
                yield block
        finally:
            out.close()

    return StreamingResponse(
        chunks(),
        media_type=archive.MEDIA_TYPE,
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{session_id}.sessiond"',
        },
    )


async def _receive(request: Request, limit: int) -> tuple[IO[bytes], str]:
    """The body in a temporary file (at its start) and the request's fingerprint for
    ``Idempotency-Key`` (method, path, query and body); 413 past ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    too_large = PayloadTooLarge(
        f"the archive is over the {limit}-byte import limit (import_max_bytes)"
    )
    if length.isdigit() and int(length) > limit:
        raise too_large
    digest = hashlib.sha256()
    target = request.url.path + ("?" + request.url.query if request.url.query else "")
    digest.update(f"{request.method}\0{target}\0".encode())
    f = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, or closed here)
    try:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise too_large
            digest.update(chunk)
            f.write(chunk)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f, digest.hexdigest()


@router.post(
    "/v1/sessions:import",
    status_code=201,
    response_model=SessionEnvelope,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {archive.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
@streamed_body
async def import_session(
    request: Request,
    ctx: Ctx,
    principal: Writer,
    workspace_id: Annotated[str | None, Query(alias="workspaceId")] = None,
) -> Response:
    """Create a new session from an export (the raw body). Into ``workspaceId`` if
    given, else the original's workspace if this account has it, else ``default``.
    A bad archive is 422 ``invalid_archive`` and writes nothing. ``Idempotency-Key``
    makes retries safe."""
    upload, fingerprint = await _receive(request, ctx.settings.import_max_bytes)
    try:
        limits = importer.Limits.of(ctx.settings)
        prepared = await asyncio.to_thread(importer.prepare, upload, limits)
    finally:
        upload.close()
    try:

        def create(tx: Tx) -> tuple[int, Any]:
            row = importer.apply(tx, principal.account_id, prepared, workspace_id=workspace_id)
            return 201, {"session": render_session(row, tx.now)}

        outcome = await idempotency.run(
            ctx.db,
            account_id=principal.account_id,
            key=request.headers.get("idempotency-key"),
            fingerprint=fingerprint,
            ttl_seconds=ctx.settings.idempotency_ttl_seconds,
            create=create,
        )
    finally:
        prepared.close()
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Response(
        outcome.body, status_code=outcome.status, media_type="application/json", headers=headers
    )
