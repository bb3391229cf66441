"""Sessions: create, get, list (filters, keyset pagination), patch, delete, tags, context."""

from __future__ import annotations

from tests.support.api import Api
from tests.support.clock import Clock

FIELDS = {
    "id", "accountId", "workspaceId", "title", "status", "activity", "tags", "metadata",
    "context", "parentId", "forkedFrom", "agent", "model", "mode", "permissions", "usage",
    "hibernateAfterSeconds", "ttlSeconds", "expiresAt",
    "ephemeral", "messageCount", "summary", "lastError", "workspace", "repo", "sandbox",
    "compactions", "importedFrom",
    "lifecycleVersion", "createdAt", "updatedAt", "lastActivityAt", "closedAt",
}  # fmt: skip


def test_session_object_is_complete(api: Api) -> None:
    s = api.session()
    assert set(s) == FIELDS
    assert s["id"].startswith("ses_") and len(s["id"]) == 30
    assert s["workspaceId"] == "default" and s["status"] == "active" and s["activity"] == "idle"
    assert s["workspace"] == {
        "head": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "base": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "filesChanged": 0,
        "linesAdded": 0,
        "linesRemoved": 0,
    }
    assert s["sandbox"] == {
        "state": None,
        "expiresAt": None,
        "hibernateAfter": 300,
        "lastUsedAt": None,
        "snapshot": None,
    }
    assert s["hibernateAfterSeconds"] == 300
    assert s["permissions"] is None
    assert s["usage"] == {
        "inputTokens": 0,
        "outputTokens": 0,
        "totalTokens": 0,
        "costUsd": 0.0,
        "turns": 0,
    }
    assert s["compactions"] == 0 and s["importedFrom"] is None
    assert s["lifecycleVersion"] == 1
    assert s["createdAt"].endswith("Z") and len(s["createdAt"]) == 24


def test_create_with_every_field(api: Api) -> None:
    s = api.session(
        title="Refactor auth",
        tags=["a", "b", "a"],
        metadata={"k": [1, 2]},
        context={"step": 1},
        ttl_seconds=600,
        ephemeral=True,
        agent="scripted",
        model="m1",
        mode="build",
    )
    assert s["tags"] == ["a", "b"]
    assert s["metadata"] == {"k": [1, 2]} and s["context"] == {"step": 1}
    assert s["ttlSeconds"] == 600 and s["expiresAt"] is not None and s["ephemeral"] is True
    assert (s["agent"], s["model"], s["mode"]) == ("scripted", "m1", "build")


def test_empty_body_and_no_body(api: Api) -> None:
    assert api.post("/v1/sessions", {}, expect=201).json()["session"]["title"] is None
    r = api.client.post("/v1/sessions", headers={"Authorization": f"Bearer {api.key}"})
    assert r.status_code == 201


def test_get_missing_is_404(api: Api) -> None:
    api.get("/v1/sessions/ses_nope", expect=404, code="not_found")


def test_patch_fields_and_version(api: Api) -> None:
    s = api.session(title="a")
    sid = s["id"]
    out = api.patch(f"/v1/sessions/{sid}", {}, expect=200).json()["session"]
    assert out["lifecycleVersion"] == 1  # {} changes nothing
    out = api.patch(f"/v1/sessions/{sid}", {"title": "a"}, expect=200).json()["session"]
    assert out["lifecycleVersion"] == 1  # same value: no change
    r = api.patch(f"/v1/sessions/{sid}", {"title": "b", "metadata": {"x": 1}, "mode": "plan"})
    out = r.json()["session"]
    assert (out["title"], out["metadata"], out["mode"]) == ("b", {"x": 1}, "plan")
    assert out["lifecycleVersion"] == 2 and r.headers["etag"] == '"2"'
    out = api.patch(f"/v1/sessions/{sid}", {"metadata": {"y": 2}}).json()["session"]
    assert out["metadata"] == {"y": 2}  # replaced, not merged
    api.patch(f"/v1/sessions/{sid}", {"status": None}, expect=422, code="validation_error")
    api.patch(f"/v1/sessions/{sid}", {"metadata": None}, expect=422, code="validation_error")


def test_if_match_and_expected_version(api: Api) -> None:
    sid = api.session()["id"]
    api.patch(f"/v1/sessions/{sid}", {"title": "x"}, headers={"If-Match": '"1"'}, expect=200)
    r = api.patch(f"/v1/sessions/{sid}", {"title": "y"}, headers={"If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["code"] == "precondition_failed"
    api.patch(f"/v1/sessions/{sid}", {"title": "y"}, headers={"If-Match": 'W/"2"'}, expect=200)
    api.patch(f"/v1/sessions/{sid}", {"title": "z"}, headers={"If-Match": "*"}, expect=200)
    api.patch(f"/v1/sessions/{sid}", {"title": "q"}, headers={"If-Match": "junk"}, expect=412)
    api.patch(f"/v1/sessions/{sid}", {"title": "q", "expectedVersion": 1}, expect=409,
              code="version_conflict")  # fmt: skip
    api.patch(f"/v1/sessions/{sid}", {"title": "q", "expected_version": 4}, expect=200)
    assert api.get(f"/v1/sessions/{sid}").json()["session"]["title"] == "q"
    api.delete(f"/v1/sessions/{sid}", headers={"If-Match": '"1"'}, expect=412)
    api.post(f"/v1/sessions/{sid}/close", {"expectedVersion": 1}, expect=409)


def test_delete(api: Api) -> None:
    sid = api.session(tags=["t"])["id"]
    api.delete(f"/v1/sessions/{sid}", expect=204)
    api.get(f"/v1/sessions/{sid}", expect=404)
    api.delete(f"/v1/sessions/{sid}", expect=404)
    assert api.get("/v1/sessions?tag=t").json()["sessions"] == []


def test_tags_route(api: Api) -> None:
    sid = api.session(tags=["a", "b"])["id"]
    url = f"/v1/sessions/{sid}/tags"
    assert api.patch(url, {"add": ["c", "a"]}).json()["session"]["tags"] == ["a", "b", "c"]
    assert api.patch(url, {"remove": ["b", "zz"]}).json()["session"]["tags"] == ["a", "c"]
    out = api.patch(url, {"set": ["x"], "add": ["y"]}).json()["session"]
    assert out["tags"] == ["x", "y"] and out["lifecycleVersion"] == 4
    assert api.patch(url, {}).json()["session"]["lifecycleVersion"] == 4
    api.patch(url, {"add": [""]}, expect=422, code="validation_error")
    api.patch(url, {"add": ["t"] * 1 + [f"t{i}" for i in range(60)]}, expect=422)


def test_context_get_put_patch(api: Api) -> None:
    sid = api.session(context={"a": 1, "nested": {"x": 1, "y": 2}})["id"]
    url = f"/v1/sessions/{sid}/context"
    assert api.get(url).json() == {"context": {"a": 1, "nested": {"x": 1, "y": 2}}}
    patched = api.patch(url, {"context": {"nested": {"y": None, "z": 3}, "b": [1]}}).json()
    assert patched == {"context": {"a": 1, "nested": {"x": 1, "z": 3}, "b": [1]}}
    assert api.put(url, {"context": {"only": True}}).json() == {"context": {"only": True}}
    assert api.get(url).json() == {"context": {"only": True}}
    api.put(url, {"context": [1, 2]}, expect=422, code="validation_error")
    api.patch(url, {"context": "scalar"}, expect=422, code="validation_error")
    api.put(url, {}, expect=422, code="validation_error")
    s = api.get(f"/v1/sessions/{sid}").json()["session"]
    assert s["context"] == {"only": True} and s["lifecycleVersion"] == 3
    api.put(url, {"context": {}}, headers={"If-Match": '"1"'}, expect=412)
    api.put(url, {"context": {}, "expectedVersion": 1}, expect=409, code="version_conflict")


def test_list_filters(api: Api) -> None:
    a = api.session(title="Alpha refactor", tags=["x", "y"], workspace_id="default")
    b = api.session(title="beta", tags=["x"])
    c = api.session(title="Gamma 100%_done")
    c = api.patch(f"/v1/sessions/{c['id']}", {"status": "completed"}, expect=200).json()["session"]

    def ids(query: str) -> list[str]:
        return [s["id"] for s in api.get(f"/v1/sessions?{query}", expect=200).json()["sessions"]]

    assert set(ids("")) == {a["id"], b["id"], c["id"]}
    assert ids("tag=x&tag=y") == [a["id"]]
    assert set(ids("tag=x")) == {a["id"], b["id"]}
    assert ids("q=REFACTOR") == [a["id"]]
    assert ids("q=100%25_") == [c["id"]]  # LIKE wildcards are literal
    assert ids("q=%25") == [c["id"]]
    assert ids("status=completed") == [c["id"]]
    assert set(ids("status=active,completed")) == {a["id"], b["id"], c["id"]}
    assert ids("workspaceId=default&tag=y") == [a["id"]]
    assert ids("parentId=ses_none") == []
    assert ids("sort=createdAt&order=asc") == [a["id"], b["id"], c["id"]]
    assert ids("sort=createdAt&order=desc") == [c["id"], b["id"], a["id"]]
    assert ids(f"updatedAfter={c['updatedAt']}") == []
    assert a["id"] in ids("updatedAfter=2000-01-01T00:00:00Z")
    api.get("/v1/sessions?updatedAfter=yesterday", expect=422, code="validation_error")
    api.get("/v1/sessions?sort=title", expect=422)
    api.get("/v1/sessions?order=up", expect=422)


def test_keyset_pagination_is_stable(api: Api) -> None:
    made = [api.session(title=f"s{i}")["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        q = "limit=3&sort=createdAt&order=asc" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(f"/v1/sessions?{q}", expect=200).json()
        seen += [s["id"] for s in body["sessions"]]
        pages += 1
        if pages == 1:
            api.session(title="inserted while paging")  # must not shift later pages
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen[:7] == made and len(seen) == 8 and pages == 3
    # A cursor from one ordering is refused by another.
    first = api.get("/v1/sessions?limit=1").json()["nextCursor"]
    api.get(f"/v1/sessions?limit=1&sort=createdAt&cursor={first}", expect=422)


def test_last_activity_order(api: Api, clock: Clock) -> None:
    a = api.session()
    clock.advance(0.005)
    b = api.session()
    got = [s["id"] for s in api.get("/v1/sessions").json()["sessions"]]
    assert got == [b["id"], a["id"]]
    clock.advance(0.005)
    api.post(f"/v1/sessions/{a['id']}/messages", {"role": "user", "content": "hi"}, expect=201)
    got = [s["id"] for s in api.get("/v1/sessions").json()["sessions"]]
    assert got == [a["id"], b["id"]]  # activity, not creation, orders the list
