"""Memory response shapes for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class EmbeddingOut(BaseModel):
    model: str
    dims: int


class MemoryOut(BaseModel):
    id: str
    namespace: str
    text: str
    metadata: dict[str, Any]
    sessionId: str | None
    workspaceId: str | None
    embedding: EmbeddingOut | None
    createdAt: str
    updatedAt: str
    expiresAt: str | None


class MemoryEnvelope(BaseModel):
    memory: MemoryOut


class MemoryList(BaseModel):
    memories: list[MemoryOut]
    nextCursor: str | None


class MatchOut(BaseModel):
    memory: MemoryOut
    score: float
    textRank: int | None
    vectorRank: int | None


class SearchOut(BaseModel):
    mode: str
    matches: list[MatchOut]
