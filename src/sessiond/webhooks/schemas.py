"""Webhook response shapes for OpenAPI."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class WebhookOut(BaseModel):
    id: str
    url: str
    types: list[str]
    workspaceId: str | None
    active: bool
    deactivatedReason: str | None
    createdAt: str
    updatedAt: str


class WebhookEnvelope(BaseModel):
    webhook: WebhookOut


class WebhookCreated(BaseModel):
    webhook: WebhookOut
    secret: str


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]
    nextCursor: str | None


class DeliveryOut(BaseModel):
    id: str
    webhookId: str
    eventId: int
    eventType: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    lastStatusCode: int | None
    lastError: str | None
    nextAttemptAt: str | None
    createdAt: str
    updatedAt: str


class DeliveryEnvelope(BaseModel):
    delivery: DeliveryOut


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    nextCursor: str | None
