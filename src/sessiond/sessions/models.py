"""Request bodies of the session routes. Size limits are checked by the service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from sessiond.models import CHAR, NON_SPACE, PATH_SCHEMA, ApiModel, Declared, NotNull
from sessiond.sessions.validation import (
    DEFAULT_HIBERNATE_AFTER,
    MAX_HIBERNATE_AFTER,
    MAX_TTL_SECONDS,
    NAME_FIELDS_MAX,
)
from sessiond.settings import Limits

Status = Literal["active", "completed", "failed", "closed", "expired", "archived"]

# What the OpenAPI document declares (``sessions.validation`` checks it, with the server's
# configured limits; these are the defaults).
_LIMITS = Limits()
# Who decides an agent's permission requests (docs/agents.md).
Policy = Literal["ask", "allow-reads", "allow-all"]
POLICIES: tuple[str, ...] = ("ask", "allow-reads", "allow-all")

Title = Annotated[StrictStr, Declared(maxLength=_LIMITS.title_chars)]
Tag = Annotated[
    StrictStr,
    Declared(
        minLength=1,
        maxLength=_LIMITS.tag_chars,
        # no leading or trailing space (``str.strip()``)
        pattern=f"^{NON_SPACE}(?:{CHAR}*{NON_SPACE})?$",
    ),
]
Name = Annotated[StrictStr, Declared(maxLength=NAME_FIELDS_MAX)]
Ttl = Annotated[StrictInt, Declared(minimum=1, maximum=MAX_TTL_SECONDS)]
HibernateAfter = Annotated[StrictInt, Declared(minimum=1, maximum=MAX_HIBERNATE_AFTER)]
JsonObject = Annotated[Any, Declared(type="object")]
# ``source`` on create (checked by ``versions.sources.check``).
SOURCES = [
    {
        "type": "object",
        "description": "start from another session's files (or one of its checkpoints)",
        "properties": {
            "sessionId": {"type": "string", "minLength": 1},
            "checkpointId": {"type": "string"},
        },
        "required": ["sessionId"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "description": "seed files inline: path → text content",
        "properties": {
            "files": {
                "type": "object",
                "propertyNames": PATH_SCHEMA,
                "additionalProperties": {"type": "string"},
            }
        },
        "required": ["files"],
        "additionalProperties": False,
    },
]


class SessionCreate(ApiModel):
    title: Title | None = None
    workspace_id: StrictStr = "default"
    tags: list[Tag] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: Ttl | None = None
    ephemeral: StrictBool = False
    agent: Name | None = None
    model: Name | None = None
    mode: Name | None = None
    # who decides an agent's permission requests; null: the agent's configured default
    permissions: Annotated[StrictStr, Declared(enum=list(POLICIES))] | None = None
    # idle seconds before the sandbox hibernates; null = never
    hibernate_after_seconds: HibernateAfter | None = DEFAULT_HIBERNATE_AFTER
    source: Annotated[dict[str, Any], Declared(oneOf=SOURCES)] | None = None


class SessionPatch(ApiModel):
    title: Title | None = None
    status: Annotated[Status | None, NotNull] = None
    tags: Annotated[list[Tag] | None, NotNull] = None
    metadata: Annotated[dict[str, Any] | None, NotNull] = None
    ttl_seconds: Ttl | None = None
    agent: Name | None = None
    model: Name | None = None
    mode: Name | None = None
    # who decides an agent's permission requests; null: the agent's configured default
    permissions: Annotated[StrictStr, Declared(enum=list(POLICIES))] | None = None
    hibernate_after_seconds: HibernateAfter | None = None
    expected_version: StrictInt | None = None


class TagsPatch(ApiModel):
    add: list[Tag] | None = None
    remove: list[StrictStr] | None = None
    set: list[Tag] | None = None
    expected_version: StrictInt | None = None


class ContextBody(ApiModel):
    context: JsonObject
    expected_version: StrictInt | None = None


class CloseBody(ApiModel):
    expected_version: StrictInt | None = None


class CustomEvent(ApiModel):
    type: Annotated[StrictStr, Declared(pattern=r"^custom\.[A-Za-z0-9_.:-]{1,90}$")]
    data: Any = Field(default_factory=dict)
