"""Webhook routes (admin keys only): subscriptions and their delivery log."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from sessiond.context import AppContext
from sessiond.db.executor import Tx
from sessiond.errors import invalid
from sessiond.http.deps import Admin, Ctx
from sessiond.http.respond import Json, created, page
from sessiond.http.routing import StrictRoute
from sessiond.http.schemas import ERRORS
from sessiond.models import Declared
from sessiond.pagination import Limit
from sessiond.webhooks import service
from sessiond.webhooks.models import WebhookCreate, WebhookPatch
from sessiond.webhooks.schemas import (
    DeliveryEnvelope,
    DeliveryList,
    WebhookCreated,
    WebhookEnvelope,
    WebhookList,
)
from sessiond.webhooks.targets import TargetRefused, check_target

router = APIRouter(route_class=StrictRoute, tags=["webhooks"], responses=ERRORS)
ITEM = "/v1/webhooks/{webhook_id}"
DELIVERY = ITEM + "/deliveries/{delivery_id}"


async def _check_target(ctx: AppContext, url: str) -> None:
    """The URL rules, with the host resolved (off the event loop, before any write)."""
    try:
        await asyncio.to_thread(check_target, url, allow_private=ctx.settings.webhook_allow_private)
    except TargetRefused as e:
        raise invalid("url", str(e)) from None


def _wake(ctx: AppContext) -> None:
    if ctx.webhooks is not None:
        ctx.webhooks.wake()


@router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, request: Request, ctx: Ctx, principal: Admin
) -> Response:
    """Subscribe a URL to events (those after now). The secret is in this answer only.
    ``Idempotency-Key`` makes retries safe."""
    await _check_target(ctx, body.url)
    per_account = ctx.settings.webhooks_per_account

    def create(tx: Tx) -> tuple[int, Any]:
        return 201, service.create(tx, principal.account_id, body, per_account=per_account)

    return await created(request, ctx, principal, create)


@router.get("/v1/webhooks", response_model=WebhookList)
async def list_webhooks(
    ctx: Ctx, principal: Admin, limit: Limit = None, cursor: str | None = None
) -> Response:
    """The account's webhooks, oldest first."""
    return await page(
        ctx, "webhooks", service.list_page, principal.account_id, limit=limit, cursor=cursor
    )


@router.get(ITEM, response_model=WebhookEnvelope)
async def get_webhook(webhook_id: str, ctx: Ctx, principal: Admin) -> Response:
    return Json({"webhook": await ctx.db.read(service.get, principal.account_id, webhook_id)})


@router.patch(ITEM, response_model=WebhookEnvelope)
async def patch_webhook(
    webhook_id: str, body: WebhookPatch, ctx: Ctx, principal: Admin
) -> Response:
    """Change the fields given; ``active: true`` resumes a deactivated webhook where it
    stopped."""
    if body.url is not None:
        await _check_target(ctx, body.url)
    hook = await ctx.db.write(service.update, principal.account_id, webhook_id, body)
    _wake(ctx)
    return Json({"webhook": hook})


@router.delete(ITEM, status_code=204)
async def delete_webhook(webhook_id: str, ctx: Ctx, principal: Admin) -> Response:
    """Remove the webhook and its delivery log."""
    await ctx.db.write(service.delete, principal.account_id, webhook_id)
    return Response(status_code=204)


@router.get(ITEM + "/deliveries", response_model=DeliveryList)
async def list_deliveries(
    webhook_id: str,
    ctx: Ctx,
    principal: Admin,
    status: Annotated[str | None, Query(), Declared(enum=["", *service.STATUSES])] = None,
    limit: Limit = None,
    cursor: str | None = None,
) -> Response:
    """The webhook's deliveries in the order they were made (that of their events)."""
    return await page(
        ctx,
        "deliveries",
        service.deliveries_page,
        principal.account_id,
        webhook_id,
        status=status or None,
        limit=limit,
        cursor=cursor,
    )


@router.get(DELIVERY, response_model=DeliveryEnvelope)
async def get_delivery(webhook_id: str, delivery_id: str, ctx: Ctx, principal: Admin) -> Response:
    delivery = await ctx.db.read(
        service.get_delivery, principal.account_id, webhook_id, delivery_id
    )
    return Json({"delivery": delivery})


@router.post(DELIVERY + "/retry", response_model=DeliveryEnvelope)
async def retry_delivery(webhook_id: str, delivery_id: str, ctx: Ctx, principal: Admin) -> Response:
    """Send a delivery again (any status): pending, due now, a fresh set of attempts."""
    delivery = await ctx.db.write(service.retry, principal.account_id, webhook_id, delivery_id)
    _wake(ctx)
    return Json({"delivery": delivery})
