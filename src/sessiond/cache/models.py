"""Request body of ``PUT .../cache/{key}``. Sizes and ranges are checked by the service."""

from __future__ import annotations

from typing import Any

from pydantic import StrictInt

from sessiond.models import ApiModel


class EntryPut(ApiModel):
    """``{value, ttlSeconds?, ifVersion?}``; ``value`` is required (``null`` is a value)."""

    value: Any
    ttl_seconds: StrictInt | None = None
    if_version: StrictInt | None = None
