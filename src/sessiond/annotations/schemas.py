"""Annotation response shapes for OpenAPI."""

from __future__ import annotations

from pydantic import BaseModel


class FileTarget(BaseModel):
    path: str
    startLine: int
    endLine: int
    checkpointId: str | None


class MessageTarget(BaseModel):
    messageId: str


class AnnotationOut(BaseModel):
    id: str
    sessionId: str
    target: FileTarget | MessageTarget
    body: str
    status: str
    createdAt: str
    updatedAt: str


class AnnotationEnvelope(BaseModel):
    annotation: AnnotationOut


class AnnotationList(BaseModel):
    annotations: list[AnnotationOut]
    nextCursor: str | None
