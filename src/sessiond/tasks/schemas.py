"""Task response shapes for OpenAPI."""

from __future__ import annotations

from pydantic import BaseModel


class TaskOut(BaseModel):
    id: str
    sessionId: str
    content: str
    status: str
    priority: str
    position: int
    createdAt: str
    updatedAt: str


class TaskEnvelope(BaseModel):
    task: TaskOut


class TaskListOut(BaseModel):
    tasks: list[TaskOut]
    nextCursor: str | None
