"""Request bodies of the message routes. Parts are validated by ``conversation.parts``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, StrictStr

from sessiond.conversation.parts import Part, ToolStatus
from sessiond.models import ApiModel, DeclaredAs, NotNull
from sessiond.sessions.models import Name

Role = Literal["user", "assistant", "system", "tool"]
MessageStatus = Literal["complete", "streaming", "error"]
# Raw JSON, checked by ``conversation.parts.validate_parts`` (every error named by index).
Parts = Annotated[Any, DeclaredAs(list[Part]), NotNull]


class MessageCreate(ApiModel):
    """``{role, parts}`` or fold.run's shorthand ``{role, content}`` (one text part)."""

    # parts or content, not both; only an assistant message may start as streaming
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["parts"]}, {"required": ["content"]}],
            "if": {"required": ["status"], "properties": {"status": {"const": "streaming"}}},
            "then": {"properties": {"role": {"const": "assistant"}}},
        }
    )

    role: Role
    parts: Parts = None
    content: Annotated[StrictStr | None, NotNull] = None
    tool_call_id: Name | None = None
    tool_name: Name | None = None
    metadata: dict[str, Any] | None = None
    status: MessageStatus = "complete"


class ToolCallUpdate(ApiModel):
    tool_call_id: StrictStr
    status: ToolStatus
    output: Any = None
    error: Any = None


class MessagePatch(ApiModel):
    parts: Parts = None
    append_parts: Parts = None
    append_text: StrictStr | None = None
    tool_call: ToolCallUpdate | None = None
    status: Annotated[MessageStatus | None, NotNull] = None
    metadata: Annotated[dict[str, Any] | None, NotNull] = None
