"""Request and response shapes of the agent routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, StrictBool, StrictStr

from sessiond.conversation.models import MessageCreate
from sessiond.models import ApiModel, Declared, NotNull

Multitask = Literal["enqueue", "reject", "interrupt"]
ModeName = Annotated[StrictStr, Declared(minLength=1, maxLength=200)]


class PromptBody(ApiModel):
    """``{parts | content, multitask?, mode?}``: the prompt becomes a user message."""

    parts: list[Any] | None = None
    content: Annotated[StrictStr | None, NotNull] = None
    multitask: Multitask = "enqueue"
    mode: ModeName | None = None

    def message(self) -> MessageCreate:
        given = self.model_fields_set & {"parts", "content"}
        return MessageCreate.model_validate(
            {"role": "user", **{name: getattr(self, name) for name in given}}
        )


class CancelBody(ApiModel):
    queued: StrictBool = False


class ModeBody(ApiModel):
    mode: ModeName


class TurnUsage(BaseModel):
    inputTokens: int
    outputTokens: int
    totalTokens: int
    costUsd: float


class Skipped(BaseModel):
    path: str
    reason: str


class TurnOut(BaseModel):
    id: str
    sessionId: str
    status: Literal["queued", "running", "completed", "cancelled", "failed"]
    stopReason: str | None
    userMessageId: str | None
    assistantMessageId: str | None
    checkpointId: str | None
    filesChanged: list[str]
    skipped: list[Skipped]
    usage: TurnUsage | None
    error: str | None
    mode: str | None
    createdAt: str
    startedAt: str | None
    endedAt: str | None


class TurnEnvelope(BaseModel):
    turn: TurnOut


class TurnList(BaseModel):
    turns: list[TurnOut]
    nextCursor: str | None


class Cancelled(BaseModel):
    cancelled: list[str]


class AgentOut(BaseModel):
    name: str
    description: str | None
    available: bool
    error: str | None
    defaultMode: str | None
    permissions: str
    modes: list[dict[str, Any]] | None
    capabilities: dict[str, Any] | None
    command: list[str] | None = None  # admin keys only
    env: dict[str, str] | None = None  # admin keys only


class SandboxInfo(BaseModel):
    mode: Literal["bwrap", "none"]  # the confinement in force (SESSIOND_SANDBOX=auto picks)
    network: bool
    reason: str  # why this one: where bwrap is, or why it is not used


class AgentList(BaseModel):
    agents: list[AgentOut]
    sandbox: SandboxInfo
    error: str | None  # the agents file could not be read


class AgentEnvelope(BaseModel):
    agent: AgentOut
