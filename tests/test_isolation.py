"""Cross-account isolation: another account's resources answer 404 and never change.

Account ``other`` uses its own admin key (the most powerful role) on every route of
``tenant`` that takes an id. Each attempt must answer 404 ``not_found``, be
indistinguishable from a request for an id that never existed, and leave the resource
exactly as it was (re-read with the owner's key). Lists never show the other account's data.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessiond.ids import new_id
from tests.support.api import Api, Tenant

# (method, path template, JSON body); ``{id}`` is the victim's id.
SESSION_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/sessions/{id}", None),
    ("PATCH", "/v1/sessions/{id}", {"title": "taken over", "metadata": {"owner": "other"}}),
    ("DELETE", "/v1/sessions/{id}", None),
    ("PATCH", "/v1/sessions/{id}/tags", {"add": ["taken"], "remove": ["keep"]}),
    ("GET", "/v1/sessions/{id}/context", None),
    ("PUT", "/v1/sessions/{id}/context", {"context": {"owner": "other"}}),
    ("PATCH", "/v1/sessions/{id}/context", {"context": {"step": None, "owner": "other"}}),
    ("POST", "/v1/sessions/{id}/close", None),
    ("GET", "/v1/sessions/{id}/events", None),
    ("POST", "/v1/sessions/{id}/events", {"type": "custom.intrusion", "data": {"x": 1}}),
    ("GET", "/v1/sessions/{id}/events/stream", None),
]

WORKSPACE_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/workspaces/{id}", None),
    ("PATCH", "/v1/workspaces/{id}", {"name": "taken over"}),
    ("DELETE", "/v1/workspaces/{id}", None),
]


def _ids(routes: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{method} {path}" for method, path, _ in routes]


def _call(api: Api, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    """Status and JSON body. SSE routes are opened, never consumed: only errors are read."""
    if path.endswith("/stream"):
        headers = {"Authorization": f"Bearer {api.key}"}
        with api.client.stream(method, path, headers=headers) as r:
            if r.status_code == 200:
                return 200, {}
            r.read()
            return r.status_code, r.json()
    r = api.request(method, path, json=body)
    ctype = r.headers.get("content-type", "")
    return r.status_code, r.json() if ctype.startswith("application/json") else {}


def _assert_not_found(
    api: Api, method: str, template: str, body: Any, real: str, fake: str
) -> None:
    """404 ``not_found`` for ``real``, shaped exactly like the answer for a ``fake`` id."""
    status, got = _call(api, method, template.format(id=real), body)
    assert status == 404, f"{method} {template} on another account's resource: {status} {got}"
    assert got["status"] == "error" and got["code"] == "not_found" and got["error"], got
    _, never = _call(api, method, template.format(id=fake), body)
    masked = {**got, "error": got["error"].replace(real, "<id>")}
    assert masked == {**never, "error": never["error"].replace(fake, "<id>")}


# -- sessions -------------------------------------------------------------------------------


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


def _session_state(owner: Api, sid: str) -> dict[str, Any]:
    return {
        "session": owner.get(f"/v1/sessions/{sid}", expect=200).json(),
        "context": owner.get(f"/v1/sessions/{sid}/context", expect=200).json(),
        "events": owner.get(f"/v1/sessions/{sid}/events", expect=200).json(),
    }


@pytest.mark.parametrize(("method", "template", "body"), SESSION_ROUTES, ids=_ids(SESSION_ROUTES))
def test_session_routes_hide_other_accounts(
    owner: Api, intruder: Api, victim: str, method: str, template: str, body: Any
) -> None:
    before = _session_state(owner, victim)
    _assert_not_found(intruder, method, template, body, victim, new_id("ses"))
    assert _session_state(owner, victim) == before


# -- workspaces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "template", "body"), WORKSPACE_ROUTES, ids=_ids(WORKSPACE_ROUTES)
)
def test_workspace_routes_hide_other_accounts(
    owner: Api, intruder: Api, method: str, template: str, body: Any
) -> None:
    owner.post("/v1/workspaces", {"id": "team-a", "name": "Team A"}, expect=201)
    before = owner.get("/v1/workspaces/team-a", expect=200).json()
    _assert_not_found(intruder, method, template, body, "team-a", "never-created")
    assert owner.get("/v1/workspaces/team-a", expect=200).json() == before


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


# -- keys -----------------------------------------------------------------------------------


def test_revoking_another_accounts_key_is_404(
    client: TestClient, tenant: Tenant, owner: Api, intruder: Api
) -> None:
    target = Api(client, tenant.write).get("/v1/me", expect=200).json()["key"]["id"]
    before = owner.get("/v1/keys", expect=200).json()
    _assert_not_found(intruder, "DELETE", "/v1/keys/{id}", None, target, new_id("key"))
    assert owner.get("/v1/keys", expect=200).json() == before
    Api(client, tenant.write).get("/v1/me", expect=200)  # the key still works


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
    status, body = _call(intruder, "GET", f"/v1/events/stream?{param}={value}", None)
    assert status == 404 and body["code"] == "not_found", (status, body)
