"""Field checks that depend on the configured limits (API.md, Conventions → Limits)."""

from __future__ import annotations

from typing import Any

from sessiond import jsontext
from sessiond.errors import ValidationFailed, invalid
from sessiond.settings import Limits

MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
NAME_FIELDS_MAX = 200
DEFAULT_HIBERNATE_AFTER = 300  # a new session's hibernateAfterSeconds (API.md)
MAX_HIBERNATE_AFTER = 365 * 24 * 3600


def json_size(value: Any) -> int:
    return len(jsontext.dumps_bytes(value))


def check_title(limits: Limits, title: str | None) -> None:
    if title is not None and len(title) > limits.title_chars:
        raise invalid("title", f"at most {limits.title_chars} characters")


def clean_tags(limits: Limits, tags: list[str], field: str = "tags") -> list[str]:
    """Validate and de-duplicate tags, keeping first-seen order."""
    out: list[str] = []
    errors: list[dict[str, str]] = []
    for i, tag in enumerate(tags):
        if not tag or len(tag) > limits.tag_chars or tag != tag.strip():
            errors.append(
                {
                    "field": f"{field}[{i}]",
                    "message": f"a tag is 1 to {limits.tag_chars} characters, "
                    "without leading or trailing spaces",
                }
            )
        elif tag not in out:
            out.append(tag)
    if errors:
        raise ValidationFailed(errors)
    if len(out) > limits.tags_per_session:
        raise invalid(field, f"at most {limits.tags_per_session} tags per session")
    return out


def check_json_object(limits: Limits, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, "must be a JSON object")
    if json_size(value) > limits.json_bytes:
        raise invalid(field, f"at most {limits.json_bytes} bytes of JSON")
    return value


def check_ttl(ttl: int | None) -> None:
    if ttl is not None and not 1 <= ttl <= MAX_TTL_SECONDS:
        raise invalid("ttlSeconds", f"must be between 1 and {MAX_TTL_SECONDS} seconds, or null")


def check_hibernate_after(value: int | None) -> None:
    if value is not None and not 1 <= value <= MAX_HIBERNATE_AFTER:
        raise invalid(
            "hibernateAfterSeconds",
            f"must be between 1 and {MAX_HIBERNATE_AFTER} seconds, or null (never)",
        )


def check_name(field: str, value: str | None) -> None:
    if value is not None and len(value) > NAME_FIELDS_MAX:
        raise invalid(field, f"at most {NAME_FIELDS_MAX} characters")
