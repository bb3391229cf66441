"""Cache routes: put (with compare-and-set), get, delete, list by prefix.

Keys may contain ``/``: the entry routes take the rest of the path (``{key:cachekey}``);
``.../cache`` (no trailing slash) is the listing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.convertors import PathConvertor, register_url_convertor

from sessiond.cache import service as cache
from sessiond.cache.models import EntryPut, Key, Prefix
from sessiond.cache.schemas import EntryEnvelope, EntryList
from sessiond.http.deps import Ctx, IfMatch, Reader, Writer
from sessiond.http.respond import page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared
from sessiond.pagination import Limit


class KeyConvertor(PathConvertor):
    """Starlette's ``path``, but its ``.*`` stops at a newline, and the route's ``$`` then
    matches before a trailing one: ``k%0A`` would address ``k``. This takes every
    character, so such keys reach the key check (422) instead."""

    regex = r"[\s\S]*"


register_url_convertor("cachekey", KeyConvertor())

router = APIRouter(route_class=StrictRoute, tags=["cache"], responses=ERRORS)

BASE = "/v1/sessions/{session_id}/cache"
ENTRY = BASE + "/{key:cachekey}"


def _entry(text: str, status: int = 200) -> Response:
    return Response(f'{{"entry":{text}}}', status_code=status, media_type="application/json")


@router.get(BASE, response_model=EntryList)
async def list_entries(
    session_id: str,
    ctx: Ctx,
    principal: Reader,
    prefix: Prefix = None,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """Live entries ordered by key (byte order); ``prefix`` is case-sensitive."""
    return await page(
        ctx,
        "entries",
        cache.list_page,
        principal.account_id,
        session_id,
        prefix=prefix,
        limit=limit,
        cursor=cursor,
    )


@router.put(
    ENTRY,
    response_model=EntryEnvelope,
    responses={201: {"model": EntryEnvelope, "description": "the entry was created"}},
)
async def put_entry(
    session_id: str, key: Key, body: EntryPut, ctx: Ctx, principal: Writer, if_match: IfMatch
) -> Response:
    """Write an entry: 201 when it did not exist (or had expired), 200 when it replaced one.

    ``ifVersion`` makes it compare-and-set (``0``: must not exist); a mismatch → 409
    ``version_conflict`` with ``details.currentVersion``.
    """
    was_created, text = await ctx.db.write(
        cache.put,
        ctx.settings.limits,
        principal.account_id,
        session_id,
        key,
        body,
        if_match=if_match,
    )
    return _entry(text, 201 if was_created else 200)


@router.get(ENTRY, response_model=EntryEnvelope)
async def get_entry(session_id: str, key: Key, ctx: Ctx, principal: Reader) -> Response:
    """The entry; 404 when absent or past its ``expiresAt``."""
    return _entry(await ctx.db.read(cache.get_text, principal.account_id, session_id, key))


@router.delete(ENTRY, status_code=204)
async def delete_entry(
    session_id: str,
    key: Key,
    ctx: Ctx,
    principal: Writer,
    if_match: IfMatch,
    if_version: Annotated[int | None, Query(alias="ifVersion"), Declared(minimum=0)] = None,
) -> Response:
    """Delete the entry (404 if absent); ``?ifVersion=`` makes it conditional."""
    await ctx.db.write(
        cache.delete,
        principal.account_id,
        session_id,
        key,
        if_version=if_version,
        if_match=if_match,
    )
    return Response(status_code=204)
