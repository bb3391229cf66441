"""Request bodies of the note routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StrictStr

from sessiond.models import ApiModel, NotNull
from sessiond.sessions.models import Title

KINDS = ("general", "spec", "task")

NoteKind = Literal["general", "spec", "task"]


class NoteCreate(ApiModel):
    kind: NoteKind = "general"
    title: Title = ""
    body: StrictStr = ""


class NotePatch(ApiModel):
    kind: Annotated[NoteKind | None, NotNull] = None
    title: Annotated[Title | None, NotNull] = None
    body: Annotated[StrictStr | None, NotNull] = None
