"""Approval response shapes for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ApprovalOut(BaseModel):
    id: str
    sessionId: str
    workspaceId: str
    title: str
    details: Any
    kind: str | None
    options: list[Any] | None
    status: str
    comment: str | None
    optionId: str | None
    decidedAt: str | None
    decidedBy: str | None
    createdAt: str


class ApprovalEnvelope(BaseModel):
    approval: ApprovalOut


class ApprovalList(BaseModel):
    approvals: list[ApprovalOut]
    nextCursor: str | None
