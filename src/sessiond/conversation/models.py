"""Request bodies of the message routes. Parts are validated by ``conversation.parts``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import StrictStr

from sessiond.conversation.parts import ToolStatus
from sessiond.models import ApiModel

Role = Literal["user", "assistant", "system", "tool"]
MessageStatus = Literal["complete", "streaming", "error"]


class MessageCreate(ApiModel):
    """``{role, parts}`` or fold.run's shorthand ``{role, content}`` (one text part)."""

    role: Role
    parts: Any = None
    content: StrictStr | None = None
    tool_call_id: StrictStr | None = None
    tool_name: StrictStr | None = None
    metadata: dict[str, Any] | None = None
    status: MessageStatus = "complete"


class ToolCallUpdate(ApiModel):
    tool_call_id: StrictStr
    status: ToolStatus
    output: Any = None
    error: Any = None


class MessagePatch(ApiModel):
    parts: Any = None
    append_parts: Any = None
    append_text: StrictStr | None = None
    tool_call: ToolCallUpdate | None = None
    status: MessageStatus | None = None
    metadata: dict[str, Any] | None = None
