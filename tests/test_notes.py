"""Notes over HTTP: per session and across the account, keyset-paginated."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessiond.ids import new_id
from tests.support.api import Api, Tenant
from tests.support.clock import Clock

FIELDS = {"id", "sessionId", "workspaceId", "kind", "title", "body", "createdAt", "updatedAt"}
MIB = 1024 * 1024


def url(sid: str, note_id: str | None = None) -> str:
    base = f"/v1/sessions/{sid}/notes"
    return base if note_id is None else f"{base}/{note_id}"


def add(api: Api, sid: str, **body: Any) -> dict[str, Any]:
    return api.post(url(sid), body, expect=201).json()["note"]  # type: ignore[no-any-return]


def listed(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated note list, following nextCursor."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        body = api.get(path, params=q, expect=200).json()
        out.extend(body["notes"])
        cursor = body["nextCursor"]
        if cursor is None:
            return out


def note_events(api: Api, sid: str) -> list[dict[str, Any]]:
    events = api.get(f"/v1/sessions/{sid}/events", params={"limit": 200}, expect=200).json()
    return [e for e in events["events"] if e["type"].startswith("note.")]


def fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json()["details"]["errors"]]


# -- happy paths ---------------------------------------------------------------------------


def test_note_object_and_defaults(api: Api) -> None:
    sid = api.session()["id"]
    note = add(api, sid)
    assert set(note) == FIELDS
    assert note["id"].startswith("nte_") and len(note["id"]) == 30
    assert note["sessionId"] == sid and note["workspaceId"] == "default"
    assert note["kind"] == "general" and note["title"] == "" and note["body"] == ""
    assert note["createdAt"].endswith("Z") and note["updatedAt"] == note["createdAt"]
    spec = add(api, sid, kind="spec", title="API", body="# Routes\n\n- `GET /x`\n")
    assert spec["kind"] == "spec" and spec["title"] == "API" and spec["body"].startswith("# Routes")
    assert api.get(url(sid, spec["id"]), expect=200).json() == {"note": spec}
    assert listed(api, url(sid)) == [note, spec]
    session = api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]
    assert session["lastActivityAt"] == spec["createdAt"]


def test_workspace_comes_from_the_session(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    sid = api.session(workspace_id="team-a")["id"]
    note = add(api, sid, title="t")
    assert note["workspaceId"] == "team-a"
    r = api.post(url(sid), {"title": "x", "workspaceId": "default"}, expect=422)
    assert fields(r) == ["workspaceId"]


def test_patch_and_delete(api: Api) -> None:
    sid = api.session()["id"]
    note = add(api, sid, title="draft", body="one")
    got = api.patch(url(sid, note["id"]), {"body": "two", "kind": "task"}, expect=200)
    patched = got.json()["note"]
    assert patched["body"] == "two" and patched["kind"] == "task" and patched["title"] == "draft"
    assert patched["createdAt"] == note["createdAt"]
    assert patched["updatedAt"] >= note["updatedAt"]
    assert api.get(url(sid, note["id"]), expect=200).json()["note"] == patched
    assert api.patch(url(sid, note["id"]), {}, expect=200).json()["note"] == patched
    assert api.patch(url(sid, note["id"]), {"title": "draft"}, expect=200).json()["note"] == patched
    api.delete(url(sid, note["id"]), expect=204)
    api.get(url(sid, note["id"]), expect=404, code="not_found")
    api.patch(url(sid, note["id"]), {"title": "x"}, expect=404, code="not_found")
    api.delete(url(sid, note["id"]), expect=404, code="not_found")
    assert listed(api, url(sid)) == []
    events = note_events(api, sid)
    assert [e["type"] for e in events] == ["note.created", "note.updated", "note.deleted"]
    assert events[0]["data"] == {"note": note}
    assert events[1]["data"] == {"note": patched}
    assert events[2]["data"] == {"id": note["id"]}
    assert all(e["sessionId"] == sid and e["workspaceId"] == "default" for e in events)


def test_limits_are_inclusive(api: Api) -> None:
    sid = api.session()["id"]
    note = add(api, sid, title="t" * 500, body="é" * (MIB // 2))
    assert len(note["title"]) == 500 and len(note["body"]) == MIB // 2


# -- pagination and the account list -------------------------------------------------------


def test_pagination_has_no_gap_or_duplicate(api: Api) -> None:
    sid = api.session()["id"]
    made = [add(api, sid, title=f"n{i}")["id"] for i in range(7)]
    ids: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = api.get(url(sid), params=params, expect=200).json()
        assert len(body["notes"]) <= 3
        ids += [n["id"] for n in body["notes"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert ids == sorted(made) and set(ids) == set(made)
    # The account list pages the same way.
    assert [n["id"] for n in listed(api, "/v1/notes", limit=2)] == sorted(made)


def test_account_list_filters(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    s1 = api.session()["id"]
    s2 = api.session(workspace_id="team-a")["id"]
    a = add(api, s1, kind="spec")
    b = add(api, s2, kind="spec")
    c = add(api, s2, kind="task")
    d = add(api, s1)
    everything = listed(api, "/v1/notes")
    assert [n["id"] for n in everything] == sorted(x["id"] for x in (a, b, c, d))
    assert listed(api, "/v1/notes", sessionId=s2) == [b, c]
    assert listed(api, "/v1/notes", workspaceId="team-a") == [b, c]
    assert listed(api, "/v1/notes", workspaceId="default") == [a, d]
    assert listed(api, "/v1/notes", kind="spec") == [a, b]
    assert listed(api, "/v1/notes", kind="spec", workspaceId="team-a") == [b]
    assert listed(api, "/v1/notes", sessionId=s1, workspaceId="team-a") == []
    assert listed(api, "/v1/notes", kind="") == everything


def test_bad_list_parameters(api: Api) -> None:
    sid = api.session()["id"]
    for path in ("/v1/notes", url(sid)):
        for params, field in (
            ({"limit": 0}, "limit"),
            ({"limit": 201}, "limit"),
            ({"limit": "x"}, "limit"),
            ({"cursor": "not-a-cursor!"}, "cursor"),
        ):
            r = api.get(path, params=params, expect=422, code="validation_error")
            assert fields(r) == [field]
    r = api.get("/v1/notes", params={"kind": "essay"}, expect=422, code="validation_error")
    assert fields(r) == ["kind"]
    api.get("/v1/notes", params={"sessionId": "ses_nope"}, expect=404, code="not_found")
    api.get("/v1/notes", params={"workspaceId": "nope"}, expect=404, code="not_found")
    # A cursor of another listing is refused.
    for _ in range(3):
        add(api, sid)
    cursor = api.get(url(sid), params={"limit": 1}).json()["nextCursor"]
    r = api.get("/v1/notes", params={"cursor": cursor}, expect=422, code="validation_error")
    assert fields(r) == ["cursor"]


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "essay"}, "kind"),
        ({"kind": None}, "kind"),
        ({"title": "t" * 501}, "title"),
        ({"title": None}, "title"),
        ({"title": 3}, "title"),
        ({"body": "x" * (MIB + 1)}, "body"),
        ({"body": "é" * (MIB // 2 + 1)}, "body"),
        ({"body": ["x"]}, "body"),
        ({"colour": "red"}, "colour"),
        ({"id": "nte_x"}, "id"),
        ({"sessionId": "ses_x"}, "sessionId"),
    ],
)
def test_bad_create_bodies(api: Api, body: Any, field: str) -> None:
    sid = api.session()["id"]
    r = api.post(url(sid), body, expect=422, code="validation_error")
    assert field in fields(r)
    assert listed(api, url(sid)) == []
    assert note_events(api, sid) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "essay"}, "kind"),
        ({"kind": None}, "kind"),
        ({"title": "t" * 501}, "title"),
        ({"title": None}, "title"),
        ({"body": None}, "body"),
        ({"body": "x" * (MIB + 1)}, "body"),
        ({"workspaceId": "team-a"}, "workspaceId"),
    ],
)
def test_bad_patch_bodies(api: Api, body: Any, field: str) -> None:
    sid = api.session()["id"]
    note = add(api, sid, title="keep", body="keep")
    r = api.patch(url(sid, note["id"]), body, expect=422, code="validation_error")
    assert field in fields(r)
    assert api.get(url(sid, note["id"]), expect=200).json()["note"] == note
    assert len(note_events(api, sid)) == 1


# -- session state, roles, accounts --------------------------------------------------------


@pytest.mark.parametrize("state", ["closed", "archived", "expired", "failed"])
def test_writes_need_an_active_session(api: Api, clock: Clock, state: str) -> None:
    sid = api.session(ttl_seconds=3600)["id"]
    note = add(api, sid, title="t")
    if state == "closed":
        api.post(f"/v1/sessions/{sid}/close", expect=200)
    elif state == "expired":
        clock.advance(3600)
    else:
        api.patch(f"/v1/sessions/{sid}", {"status": state}, expect=200)
    api.post(url(sid), {"title": "x"}, expect=409, code="session_not_active")
    api.patch(url(sid, note["id"]), {"title": "x"}, expect=409, code="session_not_active")
    api.delete(url(sid, note["id"]), expect=409, code="session_not_active")
    assert listed(api, url(sid)) == [note]
    assert api.get(url(sid, note["id"]), expect=200).json()["note"] == note
    assert listed(api, "/v1/notes", sessionId=sid) == [note]
    assert len(note_events(api, sid)) == 1


def test_read_key_reads_but_cannot_write(client: TestClient, api: Api, tenant: Tenant) -> None:
    reader = Api(client, tenant.read)
    sid = api.session()["id"]
    note = add(api, sid, title="t")
    assert listed(reader, url(sid)) == [note]
    assert listed(reader, "/v1/notes") == [note]
    assert reader.get(url(sid, note["id"]), expect=200).json()["note"] == note
    reader.post(url(sid), {"title": "x"}, expect=403, code="forbidden")
    reader.patch(url(sid, note["id"]), {"title": "x"}, expect=403, code="forbidden")
    reader.delete(url(sid, note["id"]), expect=403, code="forbidden")
    assert listed(api, url(sid)) == [note]


def test_other_account_sees_nothing(client: TestClient, api: Api, other: Tenant) -> None:
    intruder = Api(client, other.admin)
    sid = api.session()["id"]
    note = add(api, sid, title="private")
    fake_sid, fake_nid = new_id("ses"), new_id("nte")
    theirs = intruder.session()["id"]
    mine = add(intruder, theirs, title="theirs")
    routes: list[tuple[str, str | None, Any]] = [
        ("GET", None, None),
        ("POST", None, {"title": "taken"}),
        ("GET", note["id"], None),
        ("PATCH", note["id"], {"title": "taken"}),
        ("DELETE", note["id"], None),
    ]
    for method, nid, body in routes:
        r1 = intruder.request(method, url(sid, nid), json=body)
        r2 = intruder.request(method, url(fake_sid, nid), json=body)
        assert r1.status_code == 404 == r2.status_code, (method, r1.text)
        assert r1.json()["code"] == "not_found"
        assert r1.json()["error"].replace(sid, "<id>") == r2.json()["error"].replace(
            fake_sid, "<id>"
        )
        if nid is not None:
            r1 = intruder.request(method, url(theirs, nid), json=body)
            r2 = intruder.request(method, url(theirs, fake_nid), json=body)
            assert r1.status_code == 404 == r2.status_code, (method, r1.text)
            assert r1.json()["error"].replace(nid, "<id>") == r2.json()["error"].replace(
                fake_nid, "<id>"
            )
    r1 = intruder.get("/v1/notes", params={"sessionId": sid}, expect=404, code="not_found")
    r2 = intruder.get("/v1/notes", params={"sessionId": fake_sid}, expect=404)
    assert r1.json()["error"].replace(sid, "<id>") == r2.json()["error"].replace(fake_sid, "<id>")
    assert listed(intruder, "/v1/notes") == [mine]
    assert listed(api, "/v1/notes") == [note]
    assert api.get(url(sid, note["id"]), expect=200).json()["note"] == note
    assert [e["type"] for e in note_events(api, sid)] == ["note.created"]


def test_note_of_another_session_is_404(api: Api) -> None:
    one = api.session()["id"]
    two = api.session()["id"]
    note = add(api, one, title="t")
    api.get(url(two, note["id"]), expect=404, code="not_found")
    api.patch(url(two, note["id"]), {"title": "moved"}, expect=404, code="not_found")
    api.delete(url(two, note["id"]), expect=404, code="not_found")
    assert listed(api, url(one)) == [note]
    api.get(url("ses_nope"), expect=404, code="not_found")
    api.post(url("ses_nope"), {}, expect=404, code="not_found")


def test_idempotent_post(api: Api) -> None:
    sid = api.session()["id"]
    h = {"Idempotency-Key": "note-1"}
    first = api.post(url(sid), {"title": "once"}, headers=h, expect=201)
    again = api.post(url(sid), {"title": "once"}, headers=h, expect=201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    api.post(url(sid), {"title": "two"}, headers=h, expect=422, code="idempotency_mismatch")
    assert [n["title"] for n in listed(api, url(sid))] == ["once"]
    assert len(note_events(api, sid)) == 1


def test_deleting_the_session_deletes_its_notes(api: Api) -> None:
    sid = api.session()["id"]
    keep = api.session()["id"]
    add(api, sid, title="a")
    add(api, sid, title="b")
    kept = add(api, keep, title="kept")
    assert len(listed(api, "/v1/notes")) == 3
    api.delete(f"/v1/sessions/{sid}", expect=204)
    assert listed(api, "/v1/notes") == [kept]
    api.get(url(sid), expect=404, code="not_found")
    api.get("/v1/notes", params={"sessionId": sid}, expect=404, code="not_found")
