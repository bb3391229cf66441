"""Request bodies of the annotation routes.

``target`` is taken as raw JSON and checked by ``annotations.targets`` so that every
problem names its exact field (``target.startLine``, ``target.path``, ...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr

from sessiond.annotations.targets import CHECKPOINT_ID, MAX_LINE
from sessiond.models import PATH_SCHEMA, ApiModel, Declared, NotNull

STATUSES = ("open", "resolved", "dismissed")
TARGET_DOC = "{path, startLine, endLine, checkpointId?} (a file line range) or {messageId}"

AnnotationStatus = Literal["open", "resolved", "dismissed"]
_LINE = {"type": "integer", "minimum": 1, "maximum": MAX_LINE}
# The two forms ``annotations.targets.parse`` takes (endLine >= startLine, too).
TARGETS = [
    {
        "type": "object",
        "properties": {
            "path": PATH_SCHEMA,
            "startLine": _LINE,
            "endLine": _LINE,
            "checkpointId": {
                "anyOf": [
                    {"type": "string", "pattern": f"^{CHECKPOINT_ID.pattern}$"},
                    {"type": "null"},
                ]
            },
        },
        "required": ["path", "startLine", "endLine"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {"messageId": {"type": "string", "minLength": 1}},
        "required": ["messageId"],
        "additionalProperties": False,
    },
]
Target = Annotated[Any, Field(description=TARGET_DOC), Declared(oneOf=TARGETS)]
Body = Annotated[StrictStr, Declared(minLength=1)]


class AnnotationCreate(ApiModel):
    target: Target
    body: Body
    status: AnnotationStatus = "open"


class AnnotationPatch(ApiModel):
    target: Annotated[Target, NotNull] = None
    body: Annotated[Body | None, NotNull] = None
    status: Annotated[AnnotationStatus | None, NotNull] = None
