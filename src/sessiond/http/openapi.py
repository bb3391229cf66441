"""The OpenAPI 3.1 document: FastAPI's, plus the two API-key schemes the server accepts.

Rules the services check themselves are declared on the models and parameters
(``sessiond.models.Declared``), so the document says what the server enforces. Two rules
hold for every request and are added here:

- a query parameter is absent or has a value, never ``null``;
- no string of a request holds NUL (``sessiond.values``, ``http.routing``): every string a
  request may carry is declared without it, and free-form JSON (``metadata``, ``context``,
  ``data``, ...) is ``JsonValue``, any JSON value whose strings and keys hold no NUL.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from sessiond.models import drop_null

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

NO_NUL = "^[^\\x00]*$"
JSON_VALUE_REF = "#/components/schemas/JsonValue"
JSON_VALUE: dict[str, Any] = {
    "title": "JsonValue",
    "description": "Any JSON value; no string in it (keys included) holds NUL (U+0000).",
    "anyOf": [
        {"type": ["null", "boolean", "number"]},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": JSON_VALUE_REF},
        },
    ],
}
# Keywords that say what a schema's values are (a schema with none of them takes anything).
_SHAPED = ("type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const")
_REF_PREFIX = "#/components/schemas/"


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()


def _no_nul(schema: dict[str, Any], refs: list[str], *, value: bool = True) -> None:
    """Declare in place that the strings ``schema`` takes hold no NUL; collect the
    component names it refers to in ``refs``. ``value``: ``schema`` stands for a whole
    value (not a branch adding constraints to its parent's)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref.startswith(_REF_PREFIX):
            refs.append(ref.removeprefix(_REF_PREFIX))
        return
    if value and not any(k in schema for k in _SHAPED):
        schema["$ref"] = JSON_VALUE_REF  # anything (``not: null`` may stay beside it)
        return
    types = _types(schema)
    if "string" in types and not ({"pattern", "enum", "const", "format"} & schema.keys()):
        schema["pattern"] = NO_NUL  # (a declared pattern excludes NUL itself)
    if "object" in types:
        extra = schema.get("additionalProperties", True)
        if extra is True or extra == {}:
            extra = schema["additionalProperties"] = {"$ref": JSON_VALUE_REF}
        if isinstance(extra, dict):  # (not ``false``: a model's fields are named)
            schema.setdefault("propertyNames", {"pattern": NO_NUL})
            _no_nul(extra, refs)
    if "array" in types:
        items = schema.setdefault("items", {})
        if isinstance(items, dict):
            _no_nul(items, refs)
    for sub in schema.get("properties", {}).values():
        _no_nul(sub, refs)
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            _no_nul(branch, refs, value=value and not types)


def _declare_no_nul(schema: dict[str, Any]) -> None:
    """``_no_nul`` on every request schema: parameters, bodies, the components they use."""
    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    refs: list[str] = []
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "path":  # (a path with NUL is a 404)
                    _no_nul(parameter["schema"], refs)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if "schema" in media:
                    _no_nul(media["schema"], refs)
    done: set[str] = set()
    while refs:
        name = refs.pop()
        if name not in done and name in components:
            done.add(name)
            _no_nul(components[name], refs)
    components["JsonValue"] = JSON_VALUE


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "API key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        }
        schema["security"] = [{"bearer": []}, {"apiKey": []}]
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                if path in PUBLIC_PATHS:
                    operation["security"] = []
                for parameter in operation.get("parameters", []):
                    # A parameter is absent or has a value: it is never null.
                    drop_null(parameter["schema"])
        _declare_no_nul(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
