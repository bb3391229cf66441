"""File routes: manifest, raw read/write/delete (with sha compare-and-set), batches."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from sessiond.errors import invalid
from sessiond.files import diff as diffs
from sessiond.files import service as files
from sessiond.files import snapshot
from sessiond.files.models import Batch, DeleteOp, Path, Ref
from sessiond.files.paths import check_path
from sessiond.files.service import MANIFEST_MAX_LIMIT
from sessiond.http.deps import Ctx, Reader, Writer
from sessiond.http.respond import Json
from sessiond.http.routing import StrictRoute, raw_body
from sessiond.http.schemas import ERRORS
from sessiond.models import PATH_BYTES, PATH_PATTERN, Declared

router = APIRouter(
    route_class=StrictRoute, prefix="/v1/sessions/{session_id}", tags=["files"], responses=ERRORS
)


# ``?path=`` of the manifest: the root (empty) or a directory, a trailing ``/`` allowed.
DIRECTORY_PATTERN = f"^(?:{PATH_PATTERN[1:-1]}/?)?$"


class FileEntry(BaseModel):
    path: str
    type: str
    size: int | None
    sha: str
    mode: str


class Manifest(BaseModel):
    entries: list[FileEntry]
    nextCursor: str | None


class FileOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str
    sha: str | None = None
    size: int | None = None
    deleted: bool | None = None


class FileEnvelope(BaseModel):
    file: FileOut


class BatchOut(BaseModel):
    files: list[FileOut]
    workspace: dict[str, Any]


def _sha_header(request: Request, name: str) -> str | None:
    """``If-Match: "<sha>"`` → the sha (weak prefix and quotes dropped)."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


@router.get("/files", response_model=Manifest)
async def list_files(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    path: Annotated[str, Declared(pattern=DIRECTORY_PATTERN, maxLength=PATH_BYTES + 1)] = "",
    recursive: bool = False,
    at: Ref = None,
    limit: Annotated[int | None, Declared(minimum=1, maximum=MANIFEST_MAX_LIMIT)] = None,
    cursor: str | None = None,
) -> Response:
    """The working tree's entries under ``path`` (the root by default); ``recursive=true``
    lists every file below it; ``at`` = a checkpoint id reads that checkpoint's files.
    Path order, ``limit`` default 1,000 (max 10,000)."""
    entries, next_cursor = await ctx.db.read(
        files.list_files,
        principal.account_id,
        session_id,
        path=path[:-1] if len(path) > 1 and path.endswith("/") else path,  # dir/ is dir
        recursive=recursive,
        at=at or None,
        limit=limit,
        cursor=cursor,
    )
    return Json({"entries": entries, "nextCursor": next_cursor})


@router.get("/files/{path:path}", response_class=Response)
async def read_file(session_id: str, path: Path, ctx: Ctx, principal: Reader) -> Response:
    """The file's bytes; ``ETag`` is its blob sha."""
    data, sha = await ctx.db.read(files.read_file, principal.account_id, session_id, path)
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return Response(data, media_type=media, headers={"ETag": f'"{sha}"'})


@router.put("/files/{path:path}", response_model=FileEnvelope)
@raw_body
async def write_file(
    session_id: str, path: Path, request: Request, ctx: Ctx, principal: Writer
) -> Response:
    """Write the raw request body to ``path``. ``If-Match: "<sha>"`` makes it a
    compare-and-set (412 when the file changed); ``If-None-Match: *`` creates only."""
    check_path(path, "path")
    data = await request.body()
    results, _ws = await ctx.db.write(
        files.apply_operations,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        [files.RawWrite(path, data)],
        if_match_sha=_sha_header(request, "if-match"),
        if_none_match=_sha_header(request, "if-none-match") == "*",
    )
    result = results[0]
    return Json({"file": result}, headers={"ETag": f'"{result["sha"]}"'})


@router.delete("/files/{path:path}", status_code=204)
async def delete_file(
    session_id: str, path: Path, request: Request, ctx: Ctx, principal: Writer
) -> Response:
    """Delete the file; ``If-Match: "<sha>"`` makes it conditional."""
    check_path(path, "path")
    await ctx.db.write(
        files.apply_operations,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        [DeleteOp(op="delete", path=path)],
        if_match_sha=_sha_header(request, "if-match"),
    )
    return Response(status_code=204)


@router.post("/files:batch", response_model=BatchOut)
async def batch(session_id: str, body: Batch, ctx: Ctx, principal: Writer) -> Response:
    """Write, delete and rename files, all or none, in order."""
    ops = files.parse_operations(body.operations)
    results, ws = await ctx.db.write(
        files.apply_operations, ctx.settings.limits, principal.account_id, session_id, ops
    )
    return Json({"files": results, "workspace": ws})


class DiffFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str
    status: str
    additions: int
    deletions: int
    binary: bool
    patch: str


class DiffOut(BaseModel):
    files: list[DiffFile]
    summary: dict[str, int]


@router.get(
    "/diff",
    response_model=DiffOut,
    responses={
        200: {
            "description": "the changes: JSON, or with ``format=patch`` a git-format patch",
            "content": {"text/x-diff": {"schema": {"type": "string"}}},
        }
    },
)
async def diff(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    from_: Annotated[Ref, Query(alias="from")] = None,
    to: Ref = None,
    format: Annotated[str, Declared(enum=["json", "patch"])] = "json",
) -> Response:
    """Changes from ``from`` (default: the base) to ``to`` (default: the working tree);
    each may be ``base``, ``head`` or a checkpoint id. ``format=patch`` answers a
    git-format patch (``git apply`` accepts it)."""
    if format not in ("json", "patch"):
        raise invalid("format", "json or patch")
    result = await ctx.db.read(diffs.diff, principal.account_id, session_id, from_, to)
    if format == "patch":
        return Response(result["patch"], media_type="text/x-diff")
    return Json({"files": result["files"], "summary": result["summary"]})


@router.get("/snapshot", response_class=StreamingResponse)
async def get_snapshot(session_id: str, ctx: Ctx, principal: Reader, at: Ref = None) -> Response:
    """The files as a gzip tar (the working tree, or checkpoint ``at``)."""
    archive = await ctx.db.read(
        snapshot.build,
        principal.account_id,
        session_id,
        at,
        spool_bytes=ctx.settings.tuning.snapshot_spool_bytes,
    )

    def chunks() -> Iterator[bytes]:
        try:
            while block := archive.read(64 * 1024):
                yield block
        finally:
            archive.close()

    name = f"{session_id}.tar.gz"
    return StreamingResponse(
        chunks(),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
