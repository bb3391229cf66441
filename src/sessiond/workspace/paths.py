"""The workspace path rules (API.md, Workspace): files, batches, annotation targets.

A path is relative, ``/``-separated and normalized: not empty, no leading ``/``, no
empty, ``.`` or ``..`` segment, no ``\\``, no NUL, no ``.git`` component (any case),
at most 4,096 bytes in all and 255 bytes per name (UTF-8). Anything else → 422
``invalid_path`` naming the field.
"""

from __future__ import annotations

from sessiond.errors import InvalidPath

PATH_BYTES = 4096
NAME_BYTES = 255


def _reason(path: str) -> str | None:
    if path == "":
        return "must not be empty"
    if "\x00" in path:
        return "must not contain NUL"
    if "\\" in path:
        return "must use / as separator (no \\)"
    if len(path.encode("utf-8")) > PATH_BYTES:
        return f"at most {PATH_BYTES} bytes"
    if path.startswith("/"):
        return "must be relative (no leading /)"
    for name in path.split("/"):
        if name == "..":
            return "must not contain a .. segment"
        if name in ("", "."):
            return "must be normalized (no empty or . segment, no trailing /)"
        if name.lower() == ".git":
            return "must not be inside .git"
        if len(name.encode("utf-8")) > NAME_BYTES:
            return f"a name is at most {NAME_BYTES} bytes"
    return None


def check_path(path: str, field: str) -> None:
    """Raise ``InvalidPath`` (422 ``invalid_path``) unless ``path`` follows the rules."""
    reason = _reason(path)
    if reason is not None:
        raise InvalidPath(
            f"{field}: {reason}; paths are relative to the workspace root, like src/app.py",
            details={"errors": [{"field": field, "message": reason}]},
        )
