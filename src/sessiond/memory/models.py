"""Request bodies of the memory routes. Sizes and names are checked by the service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import StrictInt, StrictStr

from sessiond.models import ApiModel, Declared, NotNull

NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
SUMMARY_NAMESPACE = "session-memory"
TOP_K_DEFAULT, TOP_K_MAX = 5, 100
QUERY_CHARS = 4000
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600

JsonObject = Annotated[Any, Declared(type="object")]
Ttl = Annotated[StrictInt, Declared(minimum=1, maximum=MAX_TTL_SECONDS)]

Namespace = Annotated[StrictStr, Declared(pattern=NAMESPACE_PATTERN, maxLength=128)]
Mode = Literal["hybrid", "text", "vector"]
# Exact-match filters: key → a JSON scalar (string, number, boolean or null).
Filters = Annotated[
    Any,
    Declared(
        type="object",
        additionalProperties={"type": ["string", "number", "boolean", "null"]},
        maxProperties=20,
    ),
]


class MemoryCreate(ApiModel):
    namespace: Namespace
    text: StrictStr
    metadata: JsonObject = None
    session_id: StrictStr | None = None
    workspace_id: StrictStr | None = None
    ttl_seconds: Ttl | None = None


class MemoryPatch(ApiModel):
    """``text``, ``metadata`` and ``ttlSeconds`` change; a memory's namespace, session and
    workspace are what it was filed under and stay."""

    text: Annotated[StrictStr | None, NotNull] = None
    metadata: Annotated[JsonObject, NotNull] = None
    ttl_seconds: Ttl | None = None


class MemorySearch(ApiModel):
    query: Annotated[StrictStr, Declared(minLength=1, maxLength=QUERY_CHARS)]
    namespace: Namespace | None = None
    workspace_id: StrictStr | None = None
    session_id: StrictStr | None = None
    metadata: Filters = None
    top_k: Annotated[StrictInt, Declared(minimum=1, maximum=TOP_K_MAX)] = TOP_K_DEFAULT
    mode: Mode = "hybrid"
