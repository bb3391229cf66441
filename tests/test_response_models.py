"""The response-model check of ``tests.support.api`` (run on every answer of every test
that uses ``Api``) catches what it promises, and its list of known gaps stays current."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from sessiond.app import create_app
from sessiond.http.routing import flatten_routes
from sessiond.settings import Settings
from tests.support.api import UNDECLARED, Api


class Thing(BaseModel):
    id: str
    count: int
    tags: list[str]


class ThingEnvelope(BaseModel):
    thing: Thing


def _answering(body: Any, status: int = 200, **route: Any) -> Api:
    """An ``Api`` on an app whose one route answers ``body``."""
    app = FastAPI()

    @app.get("/thing", **route)
    async def thing() -> JSONResponse:
        return JSONResponse(body, status_code=status)

    return Api(TestClient(app), "sk_test")


GOOD = {"thing": {"id": "t1", "count": 2, "tags": ["a"]}}


def test_a_matching_body_passes() -> None:
    assert _answering(GOOD, response_model=ThingEnvelope).get("/thing", expect=200).json() == GOOD


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"thing": {"id": "t1", "tags": []}}, "thing.count\n  Field required"),
        ({"thing": {"id": "t1", "count": "2", "tags": []}}, "thing.count\n  Input should be"),
        ({"thing": {"id": "t1", "count": 2.5, "tags": []}}, "thing.count"),
        ({"thing": {"id": 1, "count": 2, "tags": []}}, "thing.id"),
        ({"thing": {"id": "t1", "count": 2, "tags": [None]}}, "thing.tags.0"),
        ({"thing": None}, "thing\n"),
        ({"thing": {"id": "t1", "count": 2, "tags": [], "secret": 1}}, "['.thing.secret']"),
    ],
    ids=["missing", "string for int", "float for int", "int for str", "null item", "null", "extra"],
)
def test_a_body_off_its_model_fails_naming_route_and_field(body: Any, says: str) -> None:
    api = _answering(body, response_model=ThingEnvelope)
    with pytest.raises(AssertionError) as failed:
        api.get("/thing")
    assert "GET /thing" in str(failed.value) and "ThingEnvelope" in str(failed.value)
    assert says in str(failed.value)


def test_errors_are_not_held_to_the_model() -> None:
    bad = {"status": "error", "error": "nope", "code": "not_found"}
    api = _answering(bad, 404, response_model=ThingEnvelope)
    assert api.get("/thing", expect=404).json() == bad


def test_json_without_a_declared_model_fails() -> None:
    with pytest.raises(AssertionError, match="GET /thing answers JSON but declares no"):
        _answering(GOOD).get("/thing")


def test_every_json_route_declares_its_response_model() -> None:
    """A route answers JSON with a declared model, or declares another answer: 204, a raw
    or streamed body, text (metrics), or it is not an API route (git smart HTTP)."""
    app = create_app(Settings(database_url="sqlite://"))
    other = (Response,)  # PlainText, Streaming, EventSource are Response subclasses
    missing = [
        f"{sorted(route.methods)} {route.path}"
        for route in flatten_routes(app.routes)
        if isinstance(route, APIRoute)
        and route.include_in_schema
        and route.status_code != 204
        and not route.response_model
        and not (isinstance(route.response_class, type) and issubclass(route.response_class, other))
    ]
    assert missing == []
    assert set() == UNDECLARED


def test_a_raw_route_may_answer_json() -> None:
    """A route of bytes (a workspace file named ``x.json``) is not held to a model."""
    app = FastAPI()

    @app.get("/file", response_class=Response)
    async def file() -> Response:
        return Response(b'{"any": "thing"}', media_type="application/json")

    assert Api(TestClient(app), "sk_test").get("/file", expect=200).json() == {"any": "thing"}
