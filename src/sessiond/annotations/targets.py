"""Annotation targets: a file line range ``{path, startLine, endLine, checkpointId?}`` or
a message ``{messageId}``. Parsed from raw JSON so every error names its exact field.

``checkpointId`` is only checked for its shape (``cp_`` + a ULID) until checkpoints exist.
"""

from __future__ import annotations

import re
from typing import Any

from sessiond.errors import ValidationFailed, invalid
from sessiond.files.paths import check_path

FORMS = "{path, startLine, endLine, checkpointId?} or {messageId}"
CHECKPOINT_ID = re.compile(r"cp_[0-9A-HJKMNP-TV-Z]{26}")
MAX_LINE = 2**31 - 1
# Accepted spellings → the canonical (camelCase) key.
KEYS = {
    "path": "path",
    "startLine": "startLine",
    "start_line": "startLine",
    "endLine": "endLine",
    "end_line": "endLine",
    "checkpointId": "checkpointId",
    "checkpoint_id": "checkpointId",
    "messageId": "messageId",
    "message_id": "messageId",
}
FILE_KEYS = {"path", "startLine", "endLine", "checkpointId"}


def _line(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_LINE


def parse(raw: Any, field: str = "target") -> dict[str, Any]:
    """The canonical target, or 422 (``validation_error``, or ``invalid_path`` for a path
    breaking the path rules). Does not look up the message (see ``service``)."""
    if not isinstance(raw, dict):
        raise invalid(field, f"must be an object: {FORMS}")
    errors: list[dict[str, str]] = []
    given: dict[str, Any] = {}
    for key, value in raw.items():
        canon = KEYS.get(key)
        if canon is None:
            errors.append(
                {"field": f"{field}.{key}", "message": "unknown field (check the spelling)"}
            )
        elif canon in given:
            errors.append({"field": f"{field}.{canon}", "message": "given twice"})
        else:
            given[canon] = value
    if errors:
        raise ValidationFailed(errors)
    if "messageId" in given:
        if given.keys() & FILE_KEYS:
            raise invalid(field, f"either {FORMS}, not both")
        message_id = given["messageId"]
        if not isinstance(message_id, str) or not message_id:
            raise invalid(f"{field}.messageId", "must be a message id (a string)")
        return {"messageId": message_id}
    if not given:
        raise invalid(field, f"must be {FORMS}")
    path: Any = given.get("path")
    if "path" not in given:
        errors.append({"field": f"{field}.path", "message": "required"})
    elif not isinstance(path, str):
        errors.append({"field": f"{field}.path", "message": "must be a string"})
    for name in ("startLine", "endLine"):
        if name not in given:
            errors.append({"field": f"{field}.{name}", "message": "required"})
        elif not _line(given[name]):
            errors.append(
                {"field": f"{field}.{name}", "message": f"must be an integer from 1 to {MAX_LINE}"}
            )
    start: Any = given.get("startLine")
    end: Any = given.get("endLine")
    if _line(start) and _line(end) and end < start:
        errors.append({"field": f"{field}.endLine", "message": "must be >= startLine"})
    checkpoint = given.get("checkpointId")
    if checkpoint is not None and not (
        isinstance(checkpoint, str) and CHECKPOINT_ID.fullmatch(checkpoint)
    ):
        errors.append(
            {"field": f"{field}.checkpointId", "message": "must be a checkpoint id (cp_ + ULID)"}
        )
    if errors:
        raise ValidationFailed(errors)
    check_path(path, f"{field}.path")
    return {"path": path, "startLine": start, "endLine": end, "checkpointId": checkpoint}
