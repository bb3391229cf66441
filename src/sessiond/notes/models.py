"""Request bodies of the note routes."""

from __future__ import annotations

from typing import Literal

from pydantic import StrictStr

from sessiond.models import ApiModel

NOTE_BODY_BYTES = 1024 * 1024  # the markdown body, UTF-8 encoded
KINDS = ("general", "spec", "task")

NoteKind = Literal["general", "spec", "task"]


class NoteCreate(ApiModel):
    kind: NoteKind = "general"
    title: StrictStr = ""
    body: StrictStr = ""


class NotePatch(ApiModel):
    kind: NoteKind | None = None
    title: StrictStr | None = None
    body: StrictStr | None = None
