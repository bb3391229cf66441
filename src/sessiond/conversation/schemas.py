"""Message response shapes for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class MessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    sessionId: str
    parentId: str | None
    seq: int
    role: str
    parts: list[dict[str, Any]]
    toolCallId: str | None
    toolName: str | None
    metadata: dict[str, Any]
    status: str
    createdAt: str
    updatedAt: str


class MessageEnvelope(BaseModel):
    message: MessageOut


class MessageList(BaseModel):
    messages: list[MessageOut]
    nextCursor: str | None
