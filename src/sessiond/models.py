"""Base for request bodies: camelCase on the wire, snake_case accepted, unknown fields refused.

Also how a body field or query parameter declares in the OpenAPI document a rule that the
service enforces itself, with its own message (validation is unchanged):

- ``Declared(**keywords)``: JSON Schema keywords added to the field's schema
  (``Annotated[StrictStr, Declared(minLength=1, maxLength=500)]``);
- ``DeclaredAs(type, **keywords)``: the schema of another type, for a field taken as raw
  JSON and checked by the service (``Annotated[Any, DeclaredAs(list[Part])]``);
- ``NotNull``: an optional field that may be omitted but not sent as ``null``
  (``Annotated[Status | None, NotNull] = None`` is declared as ``Status``, not nullable).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, TypeAdapter
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# For patterns. No string may hold NUL (``sessiond.values``), so no pattern matches it.
# The characters ``str.strip()`` removes (``str.isspace``):
SPACES = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
CHAR = r"[^\x00]"  # any character
NON_SPACE = rf"[^{SPACES}\x00]"  # any character ``str.strip()`` keeps

_B64 = "[A-Za-z0-9+/]"
BASE64_PATTERN = f"^(?:(?:{_B64}{{4}})*(?:{_B64}{{2}}==|{_B64}{{3}}=)|(?:{_B64}{{4}})+=*|)$"

# The workspace path limits (API.md, Workspace; ``files.paths`` enforces them).
PATH_BYTES = 4096
NAME_BYTES = 255
# A workspace path as the OpenAPI document declares it (``files.paths.check_path``
# decides; its limits are in bytes of UTF-8, these in characters): relative, ``/``-separated
# names, none empty, ``.``, ``..`` or ``.git`` (any case), no ``\`` and no NUL.
_NAME = rf"(?!\.\.?(?:/|$))(?!\.[gG][iI][tT](?:/|$))[^/\\\x00]{{1,{NAME_BYTES}}}"
PATH_PATTERN = rf"^{_NAME}(?:/{_NAME})*$"
PATH_SCHEMA: dict[str, Any] = {"type": "string", "pattern": PATH_PATTERN, "maxLength": PATH_BYTES}


def comma_list(item: str) -> str:
    """A pattern for ``value.split(",")`` whose items, stripped, are empty or match ``item``
    (a pattern without anchors)."""
    one = f"[{SPACES}]*(?:{item})?[{SPACES}]*"
    return f"^{one}(?:,{one})*$"


def one_of(names: Iterable[str]) -> str:
    """An unanchored pattern for exactly one of ``names``."""
    return "|".join(names)


class ApiModel(BaseModel):
    """Request body base. ``model_fields_set`` tells omitted from explicit null."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
    )


class Declared:
    """Annotation metadata: JSON Schema ``keywords`` for the document, no validation.
    A keyword's value may be a function, called when the document is made."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def resolved(self) -> dict[str, Any]:
        return {k: v() if callable(v) else v for k, v in self.keywords.items()}

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.resolved())
        return schema

    def __repr__(self) -> str:
        return f"Declared({self.keywords!r})"


class DeclaredAs(Declared):
    """Annotation metadata: the schema of ``tp`` (plus ``keywords``), no validation."""

    def __init__(self, tp: Any, **keywords: Any) -> None:
        super().__init__(**keywords)
        self.adapter: TypeAdapter[Any] = TypeAdapter(tp)

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(self.adapter.core_schema)
        schema.update(self.resolved())
        return schema


_TYPED = ("type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const", "not")


def drop_null(schema: dict[str, Any]) -> None:
    """Make ``schema`` refuse ``null``: drop the null branch of ``anyOf`` (and a ``null``
    default); a schema that took anything takes anything but ``null``."""
    branches = schema.pop("anyOf", None)
    if branches is not None:
        rest = [b for b in branches if b != {"type": "null"}]
        if len(rest) == 1:
            schema.update({k: v for k, v in rest[0].items() if k not in schema})
        else:
            schema["anyOf"] = rest
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    if not any(k in schema for k in _TYPED):
        schema["not"] = {"type": "null"}


NotNull: Any = Field(json_schema_extra=drop_null)
