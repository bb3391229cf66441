"""Request bodies of the session routes. Size limits are checked by the service."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from sessiond.models import ApiModel

Status = Literal["active", "completed", "failed", "closed", "expired", "archived"]


class SessionCreate(ApiModel):
    title: StrictStr | None = None
    workspace_id: StrictStr = "default"
    tags: list[StrictStr] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: StrictInt | None = None
    ephemeral: StrictBool = False
    agent: StrictStr | None = None
    model: StrictStr | None = None
    mode: StrictStr | None = None
    source: dict[str, Any] | None = None


class SessionPatch(ApiModel):
    title: StrictStr | None = None
    status: Status | None = None
    tags: list[StrictStr] | None = None
    metadata: dict[str, Any] | None = None
    ttl_seconds: StrictInt | None = None
    agent: StrictStr | None = None
    model: StrictStr | None = None
    mode: StrictStr | None = None
    expected_version: StrictInt | None = None


class TagsPatch(ApiModel):
    add: list[StrictStr] | None = None
    remove: list[StrictStr] | None = None
    set: list[StrictStr] | None = None
    expected_version: StrictInt | None = None


class ContextBody(ApiModel):
    context: Any
    expected_version: StrictInt | None = None


class CloseBody(ApiModel):
    expected_version: StrictInt | None = None


class CustomEvent(ApiModel):
    type: StrictStr
    data: Any = Field(default_factory=dict)
