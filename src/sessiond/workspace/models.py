"""Request bodies of the file routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictStr

from sessiond.models import ApiModel

MAX_BATCH_OPERATIONS = 1000


class WriteOp(ApiModel):
    op: Literal["write"]
    path: StrictStr
    content: StrictStr
    encoding: Literal["utf-8", "base64"] = "utf-8"


class DeleteOp(ApiModel):
    op: Literal["delete"]
    path: StrictStr


class RenameOp(ApiModel):
    op: Literal["rename"]
    from_: StrictStr = Field(alias="from")
    to: StrictStr


OPS: dict[str, type[ApiModel]] = {"write": WriteOp, "delete": DeleteOp, "rename": RenameOp}


class Batch(ApiModel):
    operations: list[Any]
