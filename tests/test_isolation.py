"""Cross-account isolation: another account's resources answer 404 and never change.

Account ``other`` uses its own admin key (the most powerful role) on every route of
``tenant`` that takes an id — the app's own route table, so a new route is covered the
day it appears. Each attempt must answer 404 ``not_found``, be indistinguishable from a
request for an id that never existed, write nothing, and leave every resource as the
owner reads it. Lists never show the other account's data.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.http.routing import RAW_BODY, flatten_routes
from sessiond.ids import new_id
from tests.support.api import Api, Tenant
from tests.support.resources import make_resources

# A body for every route that needs one to get past validation (a 422 would answer before
# any ownership check). Each is a write that must not happen. A route that requires a body
# and has none here fails the test, by name.
Body = Callable[[dict[str, str]], Any]  # from the path parameters' values
BODIES: dict[str, Body] = {
    "PATCH /v1/workspaces/{workspace_id}": lambda v: {"name": "taken over"},
    "PATCH /v1/sessions/{session_id}": lambda v: {"title": "taken over", "metadata": {"a": 1}},
    "PATCH /v1/sessions/{session_id}/tags": lambda v: {"add": ["taken"], "remove": ["keep"]},
    "PUT /v1/sessions/{session_id}/context": lambda v: {"context": {"owner": "other"}},
    "PATCH /v1/sessions/{session_id}/context": lambda v: {"context": {"step": None}},
    "POST /v1/sessions/{session_id}/messages": lambda v: {"role": "user", "content": "x"},
    "PATCH /v1/sessions/{session_id}/messages/{message_id}": lambda v: {"appendText": "x"},
    "PUT /v1/sessions/{session_id}/tasks": lambda v: {"tasks": []},
    "POST /v1/sessions/{session_id}/tasks": lambda v: {"content": "taken over"},
    "PATCH /v1/sessions/{session_id}/tasks/{task_id}": lambda v: {"status": "completed"},
    "POST /v1/sessions/{session_id}/notes": lambda v: {"title": "taken over"},
    "PATCH /v1/sessions/{session_id}/notes/{note_id}": lambda v: {"title": "taken over"},
    "POST /v1/sessions/{session_id}/annotations": lambda v: {
        "target": {"path": v["path"], "startLine": 1, "endLine": 1},
        "body": "taken over",
    },
    "PATCH /v1/sessions/{session_id}/annotations/{annotation_id}": lambda v: {"status": "resolved"},
    "POST /v1/sessions/{session_id}/approvals": lambda v: {"title": "taken over"},
    "POST /v1/sessions/{session_id}/approvals/{approval_id}/grant": lambda v: {"comment": "x"},
    "POST /v1/sessions/{session_id}/approvals/{approval_id}/deny": lambda v: {"comment": "x"},
    "PUT /v1/sessions/{session_id}/cache/{key:cachekey}": lambda v: {"value": "taken over"},
    "PUT /v1/sessions/{session_id}/files/{path:path}": lambda v: b"taken over",
    "POST /v1/sessions/{session_id}/files:batch": lambda v: {
        "operations": [{"op": "delete", "path": v["path"]}]
    },
    "POST /v1/sessions/{session_id}/checkpoints": lambda v: {"label": "taken over"},
    "POST /v1/sessions/{session_id}/restore": lambda v: {"checkpointId": v["checkpoint_id"]},
    "POST /v1/sessions/{session_id}/revert": lambda v: {"messageId": v["message_id"]},
    "POST /v1/sessions/{session_id}/fork": lambda v: {"title": "taken over"},
    "POST /v1/sessions/{session_id}/commit": lambda v: {"message": "taken over"},
    "PUT /v1/sessions/{session_id}/environmentSpec": lambda v: {"environmentSpec": {"a": 1}},
    "POST /v1/sessions/{session_id}:mergeFrom": lambda v: {"sourceSessionId": v["session_id"]},
    "POST /v1/sessions/{session_id}/events": lambda v: {"type": "custom.x", "data": {}},
    "POST /v1/sessions/{session_id}/git/{rest:path}": lambda v: b"0000",
    "POST /v1/sessions/{session_id}/prompt": lambda v: {"content": "say: taken over"},
    "POST /v1/sessions/{session_id}/exec": lambda v: {"command": "echo taken over > f"},
    "PUT /v1/sessions/{session_id}/mode": lambda v: {"mode": "plan"},
    "PATCH /v1/webhooks/{webhook_id}": lambda v: {"url": "http://127.0.0.1:9/taken"},
    "PATCH /v1/memory/{memory_id}": lambda v: {"text": "taken over"},
}
# Routes of server-wide configuration, the same for every account (the agents the
# operator configured): not an account's resource, so not hidden.
SERVER_WIDE = {"/v1/agents/{name}"}
# Path parameters that are names inside a session (a cache key, a file, a git URL's tail),
# not ids: the fake request keeps them.
NOT_IDS = {"key", "path", "rest"}


def _routes(client: TestClient) -> list[APIRoute]:
    """Every API route whose path names something (has a path parameter)."""
    routes = flatten_routes(client.app.routes)  # type: ignore[attr-defined]
    return [
        r
        for r in routes
        if isinstance(r, APIRoute) and r.param_convertors and r.path not in SERVER_WIDE
    ]


def _label(method: str, route: APIRoute) -> str:
    return f"{method} {route.path}"


def _is_stream(route: APIRoute) -> bool:
    return "text/event-stream" in route.responses.get(200, {}).get("content", {})


def _body_required(route: APIRoute, method: str) -> bool:
    if getattr(route.endpoint, RAW_BODY, False):
        return method != "GET"
    field = route.body_field
    return field is not None and field.field_info.is_required()


def _path(route: APIRoute, values: dict[str, str]) -> str:
    path = route.path_format
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", values[name])
    return path


def _call(api: Api, method: str, route: APIRoute, path: str, body: Any) -> tuple[int, Any]:
    """Status and JSON body. SSE routes are opened, never consumed: only errors are read."""
    if _is_stream(route):
        headers = {"Authorization": f"Bearer {api.key}"}
        with api.client.stream(method, path, headers=headers) as r:
            if r.status_code == 200:
                return 200, {}
            r.read()
            return r.status_code, r.json()
    if isinstance(body, bytes):
        r = api.request(method, path, content=body)
    else:
        r = api.request(method, path, json=body)
    ctype = r.headers.get("content-type", "")
    return r.status_code, r.json() if ctype.startswith("application/json") else r.content


BACKGROUND = {("agent_leases", "expires_at")}


def _database(client: TestClient) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: a 404 must write nothing, anywhere."""

    def read(tx: Any) -> dict[str, list[tuple[Any, ...]]]:
        out = {}
        for table in t.metadata.sorted_tables:
            # A lease's expiry moves with the runner's heartbeat, not with any request.
            columns = [c for c in table.c if (table.name, c.name) not in BACKGROUND]
            rows = tx.conn.execute(sa.select(*columns)).all()
            out[table.name] = sorted((tuple(row) for row in rows), key=repr)
        return out

    return client.app.state.ctx.db.read_sync(read)  # type: ignore[attr-defined,no-any-return]


# GET routes that write: left out of the owner's view (reading it would change it).
WRITING_GETS = {
    "/v1/sessions/{session_id}/git/{rest:path}": "a fetch commits the working tree first",
}


def _owner_view(owner: Api, routes: list[APIRoute], values: dict[str, str]) -> dict[str, Any]:
    """What the owner reads on every GET route that names one of its resources."""
    view = {}
    for route in routes:
        if "GET" in route.methods and not _is_stream(route) and route.path not in WRITING_GETS:
            r = owner.get(_path(route, values), expect=200)
            kind = r.headers.get("content-type")
            # (the gzip header holds the time it was made: compare what it holds)
            if kind == "application/gzip":
                view[route.path] = gzip.decompress(r.content)
            elif kind == "application/x-sessiond-export":
                view[route.path] = _export_content(r.content)
            else:
                view[route.path] = r.content
    return view


def _export_content(data: bytes) -> Any:
    """What an export holds, the moment it was made aside (``exportedAt``, the times of
    its gzip header and members)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    manifest = json.loads(members.pop("manifest.json"))
    manifest.pop("exportedAt")
    return manifest, members


def _masked(answer: Any, values: dict[str, str]) -> Any:
    text = json.dumps(answer, sort_keys=True)
    for name, value in values.items():
        if name not in NOT_IDS:
            text = text.replace(value, f"<{name}>")
    return json.loads(text)


@pytest.fixture
def owner(client: TestClient, tenant: Tenant) -> Api:
    return Api(client, tenant.admin)


@pytest.fixture
def intruder(client: TestClient, other: Tenant) -> Api:
    return Api(client, other.admin)


@pytest.fixture
def victim(owner: Api) -> str:
    """An active session of ``tenant`` with a title, tags, metadata, context and events."""
    sid = owner.session(
        title="private", tags=["keep"], metadata={"secret": 1}, context={"step": 1}
    )["id"]
    owner.post(f"/v1/sessions/{sid}/events", {"type": "custom.mine", "data": {}}, expect=201)
    return str(sid)


def test_every_route_hides_other_accounts_resources(
    client: TestClient, owner: Api, intruder: Api
) -> None:
    """Every method of every route with a path parameter, filled with the ids of real
    resources of ``tenant``, answers ``other``'s admin key 404 ``not_found`` — the answer
    for ids that never existed — and writes nothing."""
    mine = make_resources(owner)
    real = {**mine.path_params(), "rest": "info/refs"}
    fake = {
        name: value if name in NOT_IDS else new_id(value.partition("_")[0] or "x")
        for name, value in real.items()
    }
    fake["workspace_id"] = "never-created"
    routes = _routes(client)
    labels = {_label(m, r) for r in routes for m in r.methods}
    unknown = sorted(
        f"{_label(m, r)}: {sorted(set(r.param_convertors) - set(real))}"
        for r in routes
        for m in r.methods
        if set(r.param_convertors) - set(real)
    )
    no_body = sorted(
        _label(m, r)
        for r in routes
        for m in r.methods
        if _body_required(r, m) and _label(m, r) not in BODIES
    )
    assert not unknown, f"routes with path parameters this test has no value for: {unknown}"
    assert not no_body, f"routes that require a body this test does not have: {no_body}"
    assert not set(BODIES) - labels, f"BODIES names no route: {sorted(set(BODIES) - labels)}"

    view = _owner_view(owner, routes, real)
    rows = _database(client)
    problems = []
    for route in routes:
        for method in sorted(route.methods):
            label = _label(method, route)
            make_body = BODIES.get(label, lambda values: None)
            status, got = _call(intruder, method, route, _path(route, real), make_body(real))
            if status != 404 or not isinstance(got, dict) or got.get("code") != "not_found":
                problems.append(f"{label}: {status} {got!r:.300}")
            else:
                _, never = _call(intruder, method, route, _path(route, fake), make_body(fake))
                if _masked(got, real) != _masked(never, fake):
                    problems.append(f"{label}: {got} differs from the answer {never}")
            now = _database(client)
            if now != rows:
                changed = sorted(name for name in rows if rows[name] != now[name])
                problems.append(f"{label}: changed the database (tables {changed})")
                rows = now
    assert not problems, "\n".join(problems)
    assert _owner_view(owner, routes, real) == view
    assert len(labels) >= 60  # the route table really was read


def test_workspace_ids_are_per_account(owner: Api, intruder: Api) -> None:
    """Taking an id another account uses must not reveal that it exists (no 409)."""
    owner.post("/v1/workspaces", {"id": "team-a", "name": "Team A"}, expect=201)
    mine = intruder.post("/v1/workspaces", {"id": "team-a", "name": "Mine"}, expect=201)
    assert mine.json()["workspace"]["name"] == "Mine"
    assert owner.get("/v1/workspaces/team-a", expect=200).json()["workspace"]["name"] == "Team A"


def test_session_in_another_accounts_workspace_is_404(owner: Api, intruder: Api) -> None:
    owner.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    intruder.post("/v1/sessions", {"workspaceId": "team-a"}, expect=404, code="not_found")
    assert owner.get("/v1/sessions?workspaceId=team-a", expect=200).json()["sessions"] == []


# -- lists ----------------------------------------------------------------------------------


def test_session_list_shows_only_own_sessions(owner: Api, intruder: Api, victim: str) -> None:
    theirs = intruder.session(title="theirs")["id"]
    for query in ("", "?status=active,archived,closed", "?q=private", "?tag=keep", "?limit=200"):
        ids = [s["id"] for s in intruder.get(f"/v1/sessions{query}", expect=200).json()["sessions"]]
        assert victim not in ids, query
    assert [s["id"] for s in intruder.get("/v1/sessions").json()["sessions"]] == [theirs]
    assert [s["id"] for s in owner.get("/v1/sessions").json()["sessions"]] == [victim]


def test_workspace_list_shows_only_own_workspaces(owner: Api, intruder: Api) -> None:
    owner.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    intruder.post("/v1/workspaces", {"id": "team-b"}, expect=201)
    theirs = intruder.get("/v1/workspaces", expect=200).json()["workspaces"]
    assert sorted(w["id"] for w in theirs) == ["default", "team-b"]
    mine = owner.get("/v1/workspaces", expect=200).json()["workspaces"]
    assert sorted(w["id"] for w in mine) == ["default", "team-a"]


def test_key_list_shows_only_own_keys(
    client: TestClient, tenant: Tenant, other: Tenant, owner: Api, intruder: Api
) -> None:
    def key_id(secret: str) -> str:
        return str(Api(client, secret).get("/v1/me", expect=200).json()["key"]["id"])

    mine = {key_id(s) for s in (tenant.admin, tenant.write, tenant.read)}
    theirs = {key_id(s) for s in (other.admin, other.write, other.read)}
    listed = {k["id"] for k in intruder.get("/v1/keys", expect=200).json()["keys"]}
    assert listed == theirs
    assert {k["id"] for k in owner.get("/v1/keys", expect=200).json()["keys"]} == mine


def test_event_list_of_own_session_has_no_foreign_events(
    owner: Api, intruder: Api, victim: str
) -> None:
    theirs = intruder.session()["id"]
    events = intruder.get(f"/v1/sessions/{theirs}/events", expect=200).json()["events"]
    assert events and {e["sessionId"] for e in events} == {theirs}


@pytest.mark.parametrize("param", ["sessionId", "workspaceId"])
def test_account_stream_filtered_on_foreign_resource_is_404(
    owner: Api, intruder: Api, victim: str, param: str
) -> None:
    owner.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    value = victim if param == "sessionId" else "team-a"
    headers = {"Authorization": f"Bearer {intruder.key}"}
    with intruder.client.stream("GET", f"/v1/events/stream?{param}={value}", headers=headers) as r:
        r.read()
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text


# -- a deleted session ----------------------------------------------------------------------

# Path parameters that name a session or something inside one (the memory item too: it
# belongs to the session that made it). A route with one of them is the session's.
SESSION_PARAMS = {
    "session_id",
    "message_id",
    "task_id",
    "note_id",
    "annotation_id",
    "approval_id",
    "checkpoint_id",
    "turn_id",
    "memory_id",
}


def test_every_route_of_a_deleted_session_is_404_at_once(client: TestClient, owner: Api) -> None:
    """Right after ``DELETE`` (its rows not purged yet: the sweep is off here), every
    method of every route that names the session or one of its resources answers its own
    account 404 ``not_found`` — the answer for ids that never existed — and writes
    nothing."""
    mine = make_resources(owner)
    real = {**mine.path_params(), "rest": "info/refs"}
    fake = {
        name: value if name in NOT_IDS else new_id(value.partition("_")[0] or "x")
        for name, value in real.items()
    }
    routes = [r for r in _routes(client) if set(r.param_convertors) & SESSION_PARAMS]
    owner.delete(f"/v1/sessions/{mine.session_id}", expect=204)
    left = _database(client)
    assert [s[0] for s in left["sessions"]] == [mine.session_id]  # marked, not purged yet
    problems = []
    rows = left
    for route in routes:
        for method in sorted(route.methods):
            label = _label(method, route)
            make_body = BODIES.get(label, lambda values: None)
            status, got = _call(owner, method, route, _path(route, real), make_body(real))
            if status != 404 or not isinstance(got, dict) or got.get("code") != "not_found":
                problems.append(f"{label}: {status} {got!r:.300}")
            else:
                _, never = _call(owner, method, route, _path(route, fake), make_body(fake))
                if _masked(got, real) != _masked(never, fake):
                    problems.append(f"{label}: {got} differs from the answer {never}")
            now = _database(client)
            if now != rows:
                changed = sorted(name for name in rows if rows[name] != now[name])
                problems.append(f"{label}: changed the database (tables {changed})")
                rows = now
    assert not problems, "\n".join(problems)
    assert len(routes) >= 50  # the route table really was read
    # Naming it from another session is no way in either.
    other = owner.session()["id"]
    merge = {"sourceSessionId": mine.session_id}
    owner.post(f"/v1/sessions/{other}:mergeFrom", merge, expect=404, code="not_found")
