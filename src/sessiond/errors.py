"""Domain errors. Each carries its HTTP status and machine code from API.md.

The core raises these; exactly one renderer (``http.errors``) turns them into the
``{"status": "error", "error", "code", "details"?}`` body.
"""

from __future__ import annotations

from typing import Any


class SessiondError(Exception):
    """Base of every error a client may see. ``message`` says what went wrong and what to do."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidJson(SessiondError):
    status, code = 400, "invalid_json"


class Unauthorized(SessiondError):
    status, code = 401, "unauthorized"


class Forbidden(SessiondError):
    status, code = 403, "forbidden"


class NotFound(SessiondError):
    status, code = 404, "not_found"


class Conflict(SessiondError):
    status, code = 409, "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class SessionNotActive(Conflict):
    code = "session_not_active"


class VersionConflict(Conflict):
    code = "version_conflict"


class MergeConflict(Conflict):
    code = "merge_conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class WorkspaceNotEmpty(Conflict):
    code = "workspace_not_empty"


class NoAgent(Conflict):
    """A prompt to a session that has no agent."""

    code = "no_agent"


class SessionBusy(Conflict):
    """A prompt with ``multitask: reject`` while another turn runs or waits."""

    code = "session_busy"


class PushRejected(Conflict):
    """The remote (or our fast-forward check) refused a push; the commit stays."""

    code = "push_rejected"


class UpstreamError(SessiondError):
    """A remote (git) could not be reached or failed."""

    status = 502
    code = "upstream_error"


class PreconditionFailed(SessiondError):
    status, code = 412, "precondition_failed"


class PayloadTooLarge(SessiondError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(SessiondError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(SessiondError):
    """422 with ``details.errors``: a list of ``{field, message}``."""

    status, code = 422, "validation_error"

    def __init__(self, errors: list[dict[str, str]], message: str | None = None) -> None:
        if message is None:
            message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid input"
        super().__init__(message, details={"errors": errors})


def invalid(field: str, message: str) -> ValidationFailed:
    """Shorthand for a one-field validation error."""
    return ValidationFailed([{"field": field, "message": message}])


class InvalidPath(SessiondError):
    """422 ``invalid_path``: a workspace path breaks the path rules (API.md, Workspace).

    ``details.errors`` has the same ``[{field, message}]`` shape as ``validation_error``.
    """

    status, code = 422, "invalid_path"


class IdempotencyMismatch(SessiondError):
    status, code = 422, "idempotency_mismatch"
