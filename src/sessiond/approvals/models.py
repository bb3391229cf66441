"""Request bodies of the approval routes. Sizes are checked by the service."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import StrictStr

from sessiond.models import ApiModel

ApprovalStatus = Literal["pending", "granted", "denied"]
STATUSES: tuple[str, ...] = ("pending", "granted", "denied")


class ApprovalCreate(ApiModel):
    """``{title, details?, kind?, options?}``: what a human is asked to decide."""

    title: StrictStr
    details: Any = None
    kind: StrictStr | None = None
    options: list[Any] | None = None


class Decision(ApiModel):
    """The optional body of ``grant`` and ``deny``."""

    comment: StrictStr | None = None
