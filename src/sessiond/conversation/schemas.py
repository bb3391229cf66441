"""Message response shapes for OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict

from sessiond.models import NotNull
from sessiond.sessions.schemas import SessionEnvelope


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


class SessionWithMessages(SessionEnvelope):
    """``GET /v1/sessions/{id}``; with ``?include=messages`` also the first page of the
    conversation (50, oldest first)."""

    messages: Annotated[list[MessageOut] | None, NotNull] = None
