"""Session response shapes for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class WorkspaceState(BaseModel):
    head: str
    base: str
    filesChanged: int
    linesAdded: int
    linesRemoved: int


class SandboxState(BaseModel):
    # null | provisioning | active | hibernating | hibernated | restoring | failed
    state: str | None
    expiresAt: str | None  # when it hibernates if unused until then
    hibernateAfter: int | None
    lastUsedAt: str | None
    snapshot: str | None


class UsageOut(BaseModel):
    inputTokens: int
    outputTokens: int
    totalTokens: int
    costUsd: float
    turns: int


class SessionOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    accountId: str
    workspaceId: str
    title: str | None
    status: str
    activity: str
    tags: list[str]
    metadata: dict[str, Any]
    context: dict[str, Any]
    parentId: str | None
    forkedFrom: dict[str, Any] | None
    agent: str | None
    model: str | None
    mode: str | None
    permissions: str | None  # ask | allow-reads | allow-all; null = the agent's default
    hibernateAfterSeconds: int | None  # idle seconds before the sandbox hibernates
    usage: UsageOut  # sums over the session's ended turns
    ttlSeconds: int | None
    expiresAt: str | None
    ephemeral: bool
    messageCount: int
    summary: Any
    lastError: Any
    workspace: WorkspaceState
    repo: dict[str, Any] | None
    sandbox: SandboxState
    lifecycleVersion: int
    createdAt: str
    updatedAt: str
    lastActivityAt: str
    closedAt: str | None


class SessionEnvelope(BaseModel):
    session: SessionOut


class SessionList(BaseModel):
    sessions: list[SessionOut]
    nextCursor: str | None


class ContextEnvelope(BaseModel):
    context: dict[str, Any]
