"""Helpers for OpenAI-compatible model endpoints (the ``openai:<base url>`` settings)."""

from __future__ import annotations


def endpoint(base: str, path: str) -> str:
    """``<base>/<path>``, adding ``/v1`` unless ``base`` already ends with it."""
    base = base.rstrip("/")
    return f"{base}/{path}" if base.endswith("/v1") else f"{base}/v1/{path}"


def auth_headers(api_key: str | None) -> dict[str, str]:
    """A bearer token when one is configured."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
