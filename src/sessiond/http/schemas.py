"""Response shapes, for the OpenAPI document (routes render JSON directly)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    status: str = "error"
    error: str
    code: str
    details: dict[str, Any] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in {
        400: "invalid_json",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        409: "invalid_transition, session_not_active, version_conflict, merge_conflict, "
        "already_exists, conflict, no_agent, session_busy, push_rejected",
        412: "precondition_failed",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "validation_error, invalid_path, idempotency_mismatch",
        502: "upstream_error",
    }.items()
}
