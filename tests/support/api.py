"""A thin test client: a key, JSON in and out, and the assertions every test repeats.

Every answer is held to the contract: an error has the one error shape, and a 2xx JSON
body matches the response model its route declares (what the OpenAPI document promises).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Match

from sessiond.auth import service as auth
from sessiond.http.routing import flatten_routes

# The route table of each app, and a validator per route (routes are built once, at
# import, and shared by every app), so the check costs one match and one validation.
_ROUTES: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
# (keyed by id: routes are not hashable; each entry keeps its route alive)
_ADAPTERS: dict[int, tuple[APIRoute, TypeAdapter[Any]]] = {}


def matched_route(app: Any, method: str, path: str) -> Any:
    """The route that serves ``method path``: the first full match, as the router does."""
    routes = _ROUTES.get(app)
    if routes is None:
        routes = _ROUTES[app] = list(flatten_routes(app.routes))
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in routes:
        if route.matches(scope)[0] == Match.FULL:
            return route
    return None


# Routes that answer JSON without declaring a response model (so the OpenAPI document
# says nothing of their body): known gaps, each to be given a model and removed from here.
# Any other such route fails the test that calls it; tests/test_response_models.py fails
# when an entry here has gained a model or no longer exists.
UNDECLARED: set[str] = set()  # routes answering JSON without a response model (none)


def check_response_model(app: Any, r: httpx.Response) -> None:
    """A 2xx JSON body must validate, strictly, against its route's ``response_model``
    (required fields present, types exact), with no field the model does not declare."""
    if not 200 <= r.status_code < 300:
        return
    if not r.headers.get("content-type", "").startswith("application/json"):
        return
    method, path = r.request.method, r.request.url.path
    route = matched_route(app, method, path)
    if not isinstance(route, APIRoute):
        return
    if route.response_model is None:
        if not isinstance(route.response_class, DefaultPlaceholder):
            return  # a route of raw bytes (``response_class=``): a file may well be JSON
        label = f"{method} {route.path}"
        assert label in UNDECLARED, f"{label} answers JSON but declares no response_model"
        return
    entry = _ADAPTERS.get(id(route))
    if entry is None:
        entry = _ADAPTERS[id(route)] = (route, TypeAdapter(route.response_model))
    adapter = entry[1]
    model = getattr(route.response_model, "__name__", route.response_model)
    try:
        value = adapter.validate_json(r.content, strict=True)
    except ValidationError as exc:
        raise AssertionError(
            f"{method} {route.path} answered {r.status_code} with a body that is not its "
            f"declared response model {model}: {exc}\nbody: {r.text[:2000]}"
        ) from None
    # A field the model does not declare is missing from the OpenAPI document (a model
    # that declares ``extra="allow"`` keeps its extras, and is not flagged).
    undeclared = sorted(_undeclared(r.json(), adapter.dump_python(value, mode="json"), ""))
    if undeclared:
        raise AssertionError(
            f"{method} {route.path} answered {r.status_code} with fields its response "
            f"model {model} does not declare: {undeclared}"
        )


def _undeclared(body: Any, declared: Any, where: str) -> set[str]:
    """Keys of ``body`` that validation dropped: absent from the re-dumped value."""
    out: set[str] = set()
    if isinstance(body, dict) and isinstance(declared, dict):
        for key, item in body.items():
            if key not in declared:
                out.add(f"{where}.{key}")
            else:
                out |= _undeclared(item, declared[key], f"{where}.{key}")
    elif isinstance(body, list) and isinstance(declared, list):
        for item, kept in zip(body, declared, strict=False):
            out |= _undeclared(item, kept, f"{where}[]")
    return out


class Api:
    """Requests with one API key. ``expect=`` asserts the status and, for errors, the shape."""

    def __init__(self, client: TestClient | httpx.Client, key: str) -> None:
        self.client = client
        self.key = key

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        expect: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        h = {"Authorization": f"Bearer {self.key}", **(headers or {})}
        r = self.client.request(method, path, json=json, headers=h, **kwargs)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        is_json = r.headers.get("content-type", "").startswith("application/json")
        app = getattr(self.client, "app", None)  # a TestClient (not a live server's client)
        if app is not None:
            check_response_model(app, r)
        if r.status_code >= 400 and is_json:
            body = r.json()
            assert body["status"] == "error" and body["error"] and body["code"], body
            if code is not None:
                assert body["code"] == code, body
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def session(self, **body: Any) -> dict[str, Any]:
        """Create a session and return its object."""
        return self.post("/v1/sessions", body, expect=201).json()["session"]  # type: ignore[no-any-return]


@dataclass
class Tenant:
    name: str
    account_id: str
    admin: str
    write: str
    read: str

    def api(self, client: TestClient | httpx.Client, role: str = "write") -> Api:
        return Api(client, getattr(self, role))


def make_tenant(client: Any, name: str, admin_secret: str | None = None) -> Tenant:
    """An account (created unless ``admin_secret`` is given) with one key of each role.

    ``client`` is a TestClient or anything with ``.app.state.ctx.db``.
    """
    db = client.app.state.ctx.db

    def setup(tx: Any) -> tuple[str, str, str, str]:
        if admin_secret is None:
            account_id = auth.create_account(tx, name)["id"]
            admin = auth.create_key(tx, account_id, "admin", "admin")[1]
        else:
            account_id = auth.account_by_name(tx, name)["id"]
            admin = admin_secret
        write = auth.create_key(tx, account_id, "write", "write")[1]
        read = auth.create_key(tx, account_id, "read", "read")[1]
        return account_id, admin, write, read

    account_id, admin, write, read = db.write_sync(setup)
    return Tenant(name, account_id, admin, write, read)
