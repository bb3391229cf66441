"""Request bodies of the file routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictStr

from sessiond.conversation.parts import BASE64_PATTERN
from sessiond.models import CHAR, ApiModel, Declared, DeclaredAs
from sessiond.workspace.paths import NAME_BYTES, PATH_BYTES

MAX_BATCH_OPERATIONS = 1000

# A workspace path as the OpenAPI document declares it (``workspace.paths.check_path``
# decides; its limits are in bytes of UTF-8, these in characters): relative, ``/``-separated
# names, none empty, ``.``, ``..`` or ``.git`` (any case), no ``\`` and no NUL.
_NAME = rf"(?!\.\.?(?:/|$))(?!\.[gG][iI][tT](?:/|$))[^/\\\x00]{{1,{NAME_BYTES}}}"
PATH_PATTERN = rf"^{_NAME}(?:/{_NAME})*$"
PATH_SCHEMA: dict[str, Any] = {"type": "string", "pattern": PATH_PATTERN, "maxLength": PATH_BYTES}
Path = Annotated[StrictStr, Declared(pattern=PATH_PATTERN, maxLength=PATH_BYTES)]
# A tree to read or compare (``workspace.diff.resolve``): ``base``, ``head`` (or ``working``),
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
