"""Request bodies of the annotation routes.

``target`` is taken as raw JSON and checked by ``annotations.targets`` so that every
problem names its exact field (``target.startLine``, ``target.path``, ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictStr

from sessiond.models import ApiModel

STATUSES = ("open", "resolved", "dismissed")
TARGET_DOC = "{path, startLine, endLine, checkpointId?} (a file line range) or {messageId}"
BODY_BYTES = 1024 * 1024

AnnotationStatus = Literal["open", "resolved", "dismissed"]


class AnnotationCreate(ApiModel):
    target: Any = Field(description=TARGET_DOC)
    body: StrictStr
    status: AnnotationStatus = "open"


class AnnotationPatch(ApiModel):
    target: Any = Field(default=None, description=TARGET_DOC)
    body: StrictStr | None = None
    status: AnnotationStatus | None = None
