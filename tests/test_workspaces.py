"""Workspaces: the undeletable ``default``, create (id rules, duplicates, Idempotency-Key),
get, rename, keyset-paginated list, and delete (only when no session is left in it)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sessiond import idempotency
from sessiond.settings import Settings
from tests.support.api import Api
from tests.support.clock import Clock

FIELDS = {"id", "name", "createdAt", "updatedAt"}


def test_default_exists(api: Api) -> None:
    ws = api.get("/v1/workspaces/default", expect=200).json()["workspace"]
    assert set(ws) == FIELDS and ws["id"] == "default"
    listed = api.get("/v1/workspaces", expect=200).json()
    assert [w["id"] for w in listed["workspaces"]] == ["default"]
    assert listed["nextCursor"] is None


def test_default_cannot_be_deleted(api: Api) -> None:
    api.delete("/v1/workspaces/default", expect=409)
    api.get("/v1/workspaces/default", expect=200)


def test_default_cannot_be_deleted_even_when_empty_after_use(api: Api) -> None:
    sid = api.session()["id"]
    api.delete(f"/v1/sessions/{sid}", expect=204)
    api.delete("/v1/workspaces/default", expect=409)
    assert api.session()["workspaceId"] == "default"


def test_create_and_get(api: Api) -> None:
    r = api.post("/v1/workspaces", {"id": "team-a", "name": "Team A"}, expect=201)
    ws = r.json()["workspace"]
    assert set(ws) == FIELDS
    assert (ws["id"], ws["name"]) == ("team-a", "Team A")
    assert ws["createdAt"].endswith("Z") and len(ws["createdAt"]) == 24
    assert ws["updatedAt"] == ws["createdAt"]
    assert api.get("/v1/workspaces/team-a", expect=200).json() == {"workspace": ws}


def test_name_defaults_to_id(api: Api) -> None:
    ws = api.post("/v1/workspaces", {"id": "scratch"}, expect=201).json()["workspace"]
    assert ws["name"] == "scratch"


@pytest.mark.parametrize("ws_id", ["a", "0", "a-b-c", "team-42", "9-lives", "a" * 63, "a-"])
def test_valid_ids(api: Api, ws_id: str) -> None:
    assert api.post("/v1/workspaces", {"id": ws_id}, expect=201).json()["workspace"]["id"] == ws_id
    api.get(f"/v1/workspaces/{ws_id}", expect=200)


@pytest.mark.parametrize(
    "ws_id",
    ["", "-a", "A", "Team", "a_b", "a.b", "a b", "ä", "a" * 64, " a", "a\n"],
    ids=[
        "empty",
        "leading-dash",
        "upper",
        "mixed-case",
        "underscore",
        "dot",
        "space",
        "non-ascii",
        "64-chars",
        "leading-space",
        "newline",
    ],
)
def test_invalid_ids_are_422(api: Api, ws_id: str) -> None:
    r = api.post("/v1/workspaces", {"id": ws_id}, expect=422, code="validation_error")
    assert [e["field"] for e in r.json()["details"]["errors"]] == ["id"]
    listed = api.get("/v1/workspaces").json()["workspaces"]
    assert [w["id"] for w in listed] == ["default"]


@pytest.mark.parametrize("body", [{}, {"id": 5}, {"id": None}, {"id": "ok", "name": 3}])
def test_missing_or_mistyped_fields_are_422(api: Api, body: dict[str, object]) -> None:
    r = api.post("/v1/workspaces", body, expect=422, code="validation_error")
    assert r.json()["details"]["errors"]


def test_duplicate_id_is_409(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a", "name": "first"}, expect=201)
    api.post(
        "/v1/workspaces", {"id": "team-a", "name": "second"}, expect=409, code="already_exists"
    )
    api.post("/v1/workspaces", {"id": "default"}, expect=409, code="already_exists")
    assert api.get("/v1/workspaces/team-a").json()["workspace"]["name"] == "first"


def test_get_missing_is_404(api: Api) -> None:
    api.get("/v1/workspaces/nope", expect=404, code="not_found")
    api.patch("/v1/workspaces/nope", {"name": "x"}, expect=404, code="not_found")
    api.delete("/v1/workspaces/nope", expect=404, code="not_found")


def test_patch_name(api: Api) -> None:
    created = api.post("/v1/workspaces", {"id": "team-a"}, expect=201).json()["workspace"]
    ws = api.patch("/v1/workspaces/team-a", {"name": "Renamed"}, expect=200).json()["workspace"]
    assert (ws["id"], ws["name"]) == ("team-a", "Renamed")
    assert ws["createdAt"] == created["createdAt"] and ws["updatedAt"] >= created["updatedAt"]
    assert api.get("/v1/workspaces/team-a").json()["workspace"]["name"] == "Renamed"
    same = api.patch("/v1/workspaces/team-a", {}, expect=200).json()["workspace"]
    assert same["name"] == "Renamed"  # {} changes nothing


def test_patch_rejects_unknown_fields_and_id_changes(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    for body in ({"nmae": "x"}, {"id": "team-b"}, {"name": 7}):
        r = api.patch("/v1/workspaces/team-a", body, expect=422, code="validation_error")
        assert r.json()["details"]["errors"]
    assert api.get("/v1/workspaces/team-a").json()["workspace"]["name"] == "team-a"
    api.get("/v1/workspaces/team-b", expect=404)


def test_list_paginates_in_id_order(api: Api) -> None:
    for ws_id in ("delta", "alpha", "charlie", "bravo"):
        api.post("/v1/workspaces", {"id": ws_id}, expect=201)
    expected = ["alpha", "bravo", "charlie", "default", "delta"]
    full = api.get("/v1/workspaces", expect=200).json()
    assert [w["id"] for w in full["workspaces"]] == expected and full["nextCursor"] is None
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        path = "/v1/workspaces?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(path, expect=200).json()
        pages += 1
        assert len(page["workspaces"]) <= 2
        seen += [w["id"] for w in page["workspaces"]]
        cursor = page["nextCursor"]
        if cursor is None or pages > 5:
            break
    assert seen == expected and pages == 3


def test_delete_empty_workspace(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    r = api.delete("/v1/workspaces/team-a", expect=204)
    assert r.content == b""
    api.get("/v1/workspaces/team-a", expect=404, code="not_found")
    assert [w["id"] for w in api.get("/v1/workspaces").json()["workspaces"]] == ["default"]
    api.delete("/v1/workspaces/team-a", expect=404, code="not_found")
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)  # the id is free again


def test_delete_with_sessions_is_409(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    s = api.session(workspaceId="team-a")
    assert s["workspaceId"] == "team-a"
    api.delete("/v1/workspaces/team-a", expect=409, code="workspace_not_empty")
    api.get("/v1/workspaces/team-a", expect=200)
    api.get(f"/v1/sessions/{s['id']}", expect=200)
    api.delete(f"/v1/sessions/{s['id']}", expect=204)
    api.delete("/v1/workspaces/team-a", expect=204)


def test_archived_and_closed_sessions_still_block_delete(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    a = api.session(workspaceId="team-a")["id"]
    b = api.session(workspaceId="team-a")["id"]
    api.patch(f"/v1/sessions/{a}", {"status": "archived"}, expect=200)
    api.post(f"/v1/sessions/{b}/close", expect=200)
    api.delete("/v1/workspaces/team-a", expect=409, code="workspace_not_empty")


def test_session_in_missing_workspace_is_404(api: Api) -> None:
    api.post("/v1/sessions", {"workspaceId": "nope"}, expect=404, code="not_found")
    api.post("/v1/sessions", {"workspace_id": "nope"}, expect=404, code="not_found")
    assert api.get("/v1/sessions?status=active,archived").json()["sessions"] == []


def test_sessions_filter_by_workspace(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    inside = api.session(workspaceId="team-a")["id"]
    api.session()
    listed = api.get("/v1/sessions?workspaceId=team-a", expect=200).json()["sessions"]
    assert [s["id"] for s in listed] == [inside]


def test_idempotent_create_replays_the_response(api: Api) -> None:
    body = {"id": "team-a", "name": "Team A"}
    headers = {"Idempotency-Key": "create-team-a"}
    first = api.post("/v1/workspaces", body, headers=headers, expect=201)
    again = api.post("/v1/workspaces", body, headers=headers, expect=201)
    assert again.json() == first.json()
    assert again.content == first.content
    listed = api.get("/v1/workspaces").json()["workspaces"]
    assert [w["id"] for w in listed] == ["default", "team-a"]


def test_idempotency_key_is_remembered_for_its_ttl(
    client: TestClient, api: Api, clock: Clock, settings: Settings
) -> None:
    ttl = settings.idempotency_ttl_seconds
    headers = {"Idempotency-Key": "make-a-session"}
    first = api.post("/v1/sessions", {"title": "once"}, headers=headers, expect=201)
    clock.advance(ttl - 60)
    again = api.post("/v1/sessions", {"title": "once"}, headers=headers, expect=201)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.content == first.content
    clock.advance(61)  # the record is forgotten: the same key creates anew
    fresh = api.post("/v1/sessions", {"title": "once"}, headers=headers, expect=201)
    assert "idempotent-replayed" not in fresh.headers
    assert fresh.json()["session"]["id"] != first.json()["session"]["id"]
    listed = api.get("/v1/sessions").json()["sessions"]
    assert len(listed) == 2
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    assert db.write_sync(idempotency.purge_expired, ttl) == 0  # the fresh record is young
    clock.advance(ttl + 1)
    assert db.write_sync(idempotency.purge_expired, ttl) == 1


def test_idempotency_key_with_a_different_body_is_422(api: Api) -> None:
    headers = {"Idempotency-Key": "k-1"}
    api.post("/v1/workspaces", {"id": "team-a"}, headers=headers, expect=201)
    api.post(
        "/v1/workspaces",
        {"id": "team-b"},
        headers=headers,
        expect=422,
        code="idempotency_mismatch",
    )
    api.get("/v1/workspaces/team-b", expect=404)
    # Without the key, a repeat is an ordinary duplicate.
    api.post("/v1/workspaces", {"id": "team-a"}, expect=409, code="already_exists")
