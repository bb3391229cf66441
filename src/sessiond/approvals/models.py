"""Request bodies of the approval routes. Sizes are checked by the service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import StrictStr

from sessiond.models import ApiModel, Declared
from sessiond.settings import Limits

ApprovalStatus = Literal["pending", "granted", "denied", "cancelled"]
# ``cancelled``: an agent's permission request whose turn ended before anyone decided.
STATUSES: tuple[str, ...] = ("pending", "granted", "denied", "cancelled")
MAX_OPTIONS = 50
KIND_MAX = 100
COMMENT_MAX = 10_000


class ApprovalCreate(ApiModel):
    """``{title, details?, kind?, options?}``: what a human is asked to decide."""

    title: Annotated[StrictStr, Declared(minLength=1, maxLength=Limits().title_chars)]
    details: Any = None
    kind: Annotated[StrictStr, Declared(minLength=1, maxLength=KIND_MAX)] | None = None
    options: Annotated[list[Any], Declared(maxItems=MAX_OPTIONS)] | None = None


class Decision(ApiModel):
    """The optional body of ``grant`` and ``deny``: ``optionId`` picks one of the
    approval's options (an agent's permission request: ACP option ids)."""

    comment: Annotated[StrictStr, Declared(maxLength=COMMENT_MAX)] | None = None
    option_id: Annotated[StrictStr, Declared(minLength=1, maxLength=200)] | None = None
