"""Note response shapes for OpenAPI."""

from __future__ import annotations

from pydantic import BaseModel


class NoteOut(BaseModel):
    id: str
    sessionId: str
    workspaceId: str
    kind: str
    title: str
    body: str
    createdAt: str
    updatedAt: str


class NoteEnvelope(BaseModel):
    note: NoteOut


class NoteList(BaseModel):
    notes: list[NoteOut]
    nextCursor: str | None
