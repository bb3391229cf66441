"""Cache entry response shapes for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class EntryOut(BaseModel):
    key: str
    value: Any
    version: int
    expiresAt: str | None
    updatedAt: str


class EntryEnvelope(BaseModel):
    entry: EntryOut


class EntryList(BaseModel):
    entries: list[EntryOut]
    nextCursor: str | None
