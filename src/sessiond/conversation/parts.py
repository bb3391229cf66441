"""Message parts: the typed, ordered pieces of a message (API.md, Conversation).

``validate_parts`` turns client JSON into stored parts (camelCase keys, defaults filled)
or raises one 422 that names every bad part by index (``parts[2].toolCallId``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictStr, ValidationError, field_validator

from sessiond.errors import ValidationFailed
from sessiond.models import BASE64_PATTERN, ApiModel, Declared

ToolStatus = Literal["pending", "running", "completed", "error"]
TOOL_STATUSES = ("pending", "running", "completed", "error")
# What ``base64.b64decode(value, validate=True)`` accepts (padding after whole groups of
# four is ignored, a short last group must be padded).


class TextPart(ApiModel):
    type: Literal["text"]
    text: StrictStr


class ReasoningPart(ApiModel):
    type: Literal["reasoning"]
    text: StrictStr


class FilePart(ApiModel):
    # (url, path or data: one of them is needed, and not empty)
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
                for name in ("url", "path", "data")
            ]
        }
    )

    type: Literal["file"]
    mime_type: StrictStr
    name: StrictStr | None = None
    path: StrictStr | None = None
    url: StrictStr | None = None
    data: Annotated[StrictStr, Declared(pattern=BASE64_PATTERN)] | None = None

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("must be base64") from None
        return value


class ToolCallPart(ApiModel):
    type: Literal["tool_call"]
    tool_call_id: StrictStr
    name: StrictStr
    input: dict[str, Any] = {}
    status: ToolStatus = "pending"
    output: Any = None
    error: Any = None


class ToolResultPart(ApiModel):
    type: Literal["tool_result"]
    tool_call_id: StrictStr
    output: Any = None
    is_error: StrictBool = False


class DataPart(ApiModel):
    type: Literal["data"]
    data: dict[str, Any]


Part = Annotated[
    TextPart | ReasoningPart | FilePart | ToolCallPart | ToolResultPart | DataPart,
    Field(discriminator="type"),
]
PART_TYPES: dict[str, type[ApiModel]] = {
    "text": TextPart,
    "reasoning": ReasoningPart,
    "file": FilePart,
    "tool_call": ToolCallPart,
    "tool_result": ToolResultPart,
    "data": DataPart,
}
# Optional fields that are left out of the stored part when not given.
_OMIT_IF_NONE = {"name", "path", "url", "data", "output", "error"}


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def validate_part(raw: Any, field: str) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """One part → (stored form, []) or (None, errors naming ``field``)."""
    if not isinstance(raw, dict):
        return None, [{"field": field, "message": "a part is a JSON object with a type"}]
    kind = raw.get("type")
    model = PART_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(PART_TYPES)
        return None, [
            {"field": f"{field}.type", "message": f"unknown part type {kind!r}; one of {known}"}
        ]
    try:
        part = model.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            kind_ = e.get("type")
            msg = (
                "unknown field (check the spelling)"
                if kind_ == "extra_forbidden"
                else "required"
                if kind_ == "missing"
                else str(e.get("msg", "invalid"))
            )
            errors.append({"field": _loc(field, tuple(e.get("loc", ()))), "message": msg})
        return None, errors
    stored = part.model_dump(by_alias=True)
    for key in _OMIT_IF_NONE:
        if key in stored and stored[key] is None and key not in part.model_fields_set:
            del stored[key]
    if isinstance(part, FilePart) and not (part.url or part.path or part.data):
        return None, [{"field": field, "message": "a file part needs url, path or data"}]
    return stored, []


def validate_parts(raw: Any, field: str = "parts") -> list[dict[str, Any]]:
    """A list of parts → stored parts, or one ``ValidationFailed`` listing every error."""
    if not isinstance(raw, list):
        raise ValidationFailed([{"field": field, "message": "must be a list of parts"}])
    out: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        part, errs = validate_part(item, f"{field}[{i}]")
        errors.extend(errs)
        if part is not None:
            out.append(part)
    if errors:
        raise ValidationFailed(errors)
    return out


def text_of(parts: list[dict[str, Any]]) -> str:
    """The text parts joined (for summaries and previews)."""
    return "\n".join(p["text"] for p in parts if p.get("type") == "text")
