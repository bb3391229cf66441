"""Request bodies of the file routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictStr

from sessiond.models import (
    BASE64_PATTERN,
    CHAR,
    PATH_BYTES,
    PATH_PATTERN,
    ApiModel,
    Declared,
    DeclaredAs,
)

MAX_BATCH_OPERATIONS = 1000

Path = Annotated[StrictStr, Declared(pattern=PATH_PATTERN, maxLength=PATH_BYTES)]
# A tree to read or compare (``files.diff.resolve``): ``base``, ``head`` (or ``working``),
# a checkpoint id or a commit sha; empty is the default.
REF_PATTERN = rf"^(?:|base|head|working|cp_{CHAR}*|[0-9a-f]{{40}})$"
Ref = Annotated[str | None, Declared(pattern=REF_PATTERN)]


class WriteOp(ApiModel):
    # ``encoding: base64``: the content must be base64
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"required": ["encoding"], "properties": {"encoding": {"const": "base64"}}},
            "then": {"properties": {"content": {"pattern": BASE64_PATTERN}}},
        }
    )

    op: Literal["write"]
    path: Path
    content: StrictStr
    encoding: Literal["utf-8", "base64"] = "utf-8"


class DeleteOp(ApiModel):
    op: Literal["delete"]
    path: Path


class RenameOp(ApiModel):
    op: Literal["rename"]
    from_: Path = Field(alias="from")
    to: Path


OPS: dict[str, type[ApiModel]] = {"write": WriteOp, "delete": DeleteOp, "rename": RenameOp}
Operation = Annotated[WriteOp | DeleteOp | RenameOp, Field(discriminator="op")]


class Batch(ApiModel):
    """``operations`` is checked by ``workspace.service.parse_operations`` (every error
    named by index)."""

    operations: Annotated[
        list[Any], DeclaredAs(list[Operation], minItems=1, maxItems=MAX_BATCH_OPERATIONS)
    ]
