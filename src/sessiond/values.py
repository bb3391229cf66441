"""What a valid stored string and a valid stored JSON value are — decided here, once.

Both backends must store and give back exactly what a client sent, or refuse it the same
way. So a value that one of them cannot hold, or that makes every later read invalid JSON,
never gets in:

- no ``NaN``, ``Infinity`` or ``-Infinity`` (not JSON; SQLite would store them and every
  later read of the row would be invalid JSON, PostgreSQL refuses them);
- no lone surrogate (``"\\ud800"``): not Unicode, cannot be encoded as UTF-8;
- no NUL (``U+0000``) in any string: PostgreSQL text cannot hold it, and the answer must
  not depend on the backend. Binary content travels base64-encoded. In a workspace path
  field (``path``, ``from``, ``to``: files, batches, annotation targets) it breaks the path
  rules, so it is 422 ``invalid_path`` there, as API.md's path rules say.

``loads`` is the request-body parser of every route (``http.routing``); ``check_value``
and ``check_text`` are for values that reach a service by another way (agents, imports).
Violations raise ``InvalidJson`` (400: not valid Unicode/JSON) or ``ValidationFailed``
(422 naming the field, for NUL).
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from sessiond.errors import InvalidJson, InvalidPath, ValidationFailed

NUL_MESSAGE = "must not contain NUL (\\u0000); send binary data base64-encoded"
PATH_FIELDS = frozenset({"path", "from", "to"})


def _no_constant(name: str) -> NoReturn:
    raise InvalidJson(f"request body is not valid JSON: {name} is not a JSON number; send null")


def loads(body: bytes | str) -> Any:
    """Parse a request body as strict JSON and check every string in it (see module doc).

    Raises ``json.JSONDecodeError`` / ``UnicodeDecodeError`` for bodies that are not
    JSON or not UTF-8 (the caller renders those as 400 ``invalid_json``).
    """
    value = json.loads(body, parse_constant=_no_constant)
    check_value(value, "")
    return value


def _shown(field: str) -> str:
    """A field name fit for an error message (it may hold what it is refused for)."""
    return field.encode("utf-8", "backslashreplace").decode("utf-8") if field else "body"


def check_text(text: str, field: str) -> None:
    """A string that may be stored as it is: valid Unicode, no NUL."""
    if "\x00" in text:
        errors = [{"field": _shown(field), "message": NUL_MESSAGE}]
        if field.rpartition(".")[2] in PATH_FIELDS:
            raise InvalidPath(f"{errors[0]['field']}: {NUL_MESSAGE}", details={"errors": errors})
        raise ValidationFailed(errors)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJson(
                f"{_shown(field)}: a string holds a lone surrogate (like \\ud800), which is "
                "not Unicode; send UTF-8 text or escape pairs"
            ) from None


def check_value(value: Any, field: str) -> None:
    """Every string (keys included) and every number of a JSON value, recursively."""
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{field}.{key}" if field else str(key)
            check_text(key, path)
            check_value(item, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_value(item, f"{field}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidJson(f"{_shown(field)}: NaN and Infinity are not JSON numbers")
