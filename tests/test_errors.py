"""Error paths: each answers with ``{"status": "error", "error", "code", "details"?}`` and the
status and code API.md gives (invalid JSON, validation, unknown fields, limits, media type,
body size, unknown routes and methods), plus the headers every response carries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.auth import service as auth
from sessiond.settings import Limits, Settings
from tests.support.api import Api, Tenant

MIB = 1024 * 1024


def _fields(r: httpx.Response) -> list[str]:
    return [e["field"] for e in r.json()["details"]["errors"]]


def _raw(api: Api, method: str, path: str, content: bytes, ctype: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": ctype}
    return api.client.request(method, path, content=content, headers=headers)


def _assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["status"] == "error" and body["error"] and body["code"] == code, body
    assert set(body) <= {"status", "error", "code", "details"}
    return body


@pytest.fixture
def sid(api: Api) -> str:
    return str(api.session(title="t")["id"])


def _no_sessions_created(api: Api, expected: int = 0) -> None:
    listed = api.get("/v1/sessions?status=active,archived,closed", expect=200).json()
    assert len(listed["sessions"]) == expected


# -- bodies that are not the JSON object expected -------------------------------------------

BODY_ROUTES = [
    ("POST", "/v1/sessions"),
    ("PATCH", "/v1/sessions/{sid}"),
    ("PUT", "/v1/sessions/{sid}/context"),
    ("POST", "/v1/workspaces"),
]
BODY_IDS = [f"{m} {p}" for m, p in BODY_ROUTES]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=BODY_IDS)
@pytest.mark.parametrize(
    "content",
    [b'{"title": "x"', b"{'title': 'x'}", b"not json", b'{"title": "caf\xe9"}', b"\xff\xfe{}"],
    ids=["truncated", "single-quotes", "text", "latin-1", "bom-garbage"],
)
def test_malformed_or_non_utf8_json_is_400(
    api: Api, sid: str, method: str, path: str, content: bytes
) -> None:
    r = _raw(api, method, path.format(sid=sid), content, "application/json")
    _assert_error(r, 400, "invalid_json")
    _no_sessions_created(api, 1)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=BODY_IDS)
@pytest.mark.parametrize("body", [[], [{"title": "x"}], "text", 42])
def test_non_object_json_is_422(api: Api, sid: str, method: str, path: str, body: Any) -> None:
    r = api.request(method, path.format(sid=sid), json=body, expect=422, code="validation_error")
    assert r.json()["details"]["errors"]
    _no_sessions_created(api, 1)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/sessions", {"title": 5}, "title"),
        ("POST", "/v1/sessions", {"tags": "a"}, "tags"),
        ("POST", "/v1/sessions", {"tags": ["ok", 1]}, "tags[1]"),
        ("POST", "/v1/sessions", {"ttlSeconds": "60"}, "ttlSeconds"),
        ("POST", "/v1/sessions", {"ephemeral": "yes"}, "ephemeral"),
        ("POST", "/v1/sessions", {"metadata": [1]}, "metadata"),
        ("POST", "/v1/sessions", {"workspaceId": 3}, "workspaceId"),
        ("PATCH", "/v1/sessions/{sid}", {"status": "bogus"}, "status"),
        ("PATCH", "/v1/sessions/{sid}", {"expectedVersion": "1"}, "expectedVersion"),
        ("PATCH", "/v1/sessions/{sid}", {"title": ["a"]}, "title"),
        ("PATCH", "/v1/sessions/{sid}/tags", {"add": "x"}, "add"),
        ("POST", "/v1/workspaces", {"id": "ok", "name": 1}, "name"),
    ],
)
def test_wrong_types_are_422_naming_the_field(
    api: Api, sid: str, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    before = api.get(f"/v1/sessions/{sid}").json()
    r = api.request(method, path.format(sid=sid), json=body, expect=422, code="validation_error")
    errors = r.json()["details"]["errors"]
    assert all(set(e) == {"field", "message"} and e["message"] for e in errors)
    assert field in _fields(r)
    assert field in r.json()["error"]
    assert api.get(f"/v1/sessions/{sid}").json() == before
    _no_sessions_created(api, 1)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/sessions", {"titel": "x"}, "titel"),
        ("POST", "/v1/sessions", {"title": "x", "ttl": 5}, "ttl"),
        ("PATCH", "/v1/sessions/{sid}", {"stauts": "completed"}, "stauts"),
        ("PATCH", "/v1/sessions/{sid}", {"title": "y", "workspaceId": "default"}, "workspaceId"),
        ("PATCH", "/v1/sessions/{sid}/tags", {"append": ["x"]}, "append"),
        ("PUT", "/v1/sessions/{sid}/context", {"context": {}, "ctx": {}}, "ctx"),
        ("PATCH", "/v1/sessions/{sid}/context", {"context": {}, "merge": True}, "merge"),
        ("POST", "/v1/sessions/{sid}/close", {"reason": "done"}, "reason"),
        ("POST", "/v1/sessions/{sid}/events", {"type": "custom.x", "payload": {}}, "payload"),
        ("POST", "/v1/workspaces", {"id": "team", "nmae": "x"}, "nmae"),
        ("PATCH", "/v1/workspaces/default", {"title": "x"}, "title"),
    ],
)
def test_unknown_fields_are_422_naming_them(
    api: Api, sid: str, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    before = api.get(f"/v1/sessions/{sid}").json()
    r = api.request(method, path.format(sid=sid), json=body, expect=422, code="validation_error")
    assert _fields(r) == [field]
    assert field in r.json()["error"]
    assert api.get(f"/v1/sessions/{sid}").json() == before
    api.get("/v1/workspaces/team", expect=404)
    _no_sessions_created(api, 1)


def test_snake_case_spelling_is_accepted(api: Api) -> None:
    api.post("/v1/workspaces", {"id": "team-a"}, expect=201)
    s = api.post("/v1/sessions", {"ttl_seconds": 60, "workspace_id": "team-a"}, expect=201)
    session = s.json()["session"]
    assert session["ttlSeconds"] == 60 and session["workspaceId"] == "team-a"
    assert session["expiresAt"] is not None
    body = {"ttl_seconds": 120, "expected_version": 1}
    out = api.patch(f"/v1/sessions/{session['id']}", body, expect=200).json()["session"]
    assert out["ttlSeconds"] == 120 and out["lifecycleVersion"] == 2
    ctx = {"context": {"a": 1}, "expected_version": 2}
    api.put(f"/v1/sessions/{session['id']}/context", ctx, expect=200)
    stale = {"context": {"a": 2}, "expected_version": 1}
    api.put(f"/v1/sessions/{session['id']}/context", stale, expect=409, code="version_conflict")


# -- size limits ------------------------------------------------------------------------------


@pytest.fixture
def small(settings: Settings) -> Iterator[Api]:
    """An app whose request bodies are limited to 1,000 bytes, with an admin key."""
    limited = settings.model_copy(update={"limits": Limits(body_bytes=1000)})
    with TestClient(create_app(limited), raise_server_exceptions=False) as c:
        secret = c.app.state.ctx.db.write_sync(auth.bootstrap)  # type: ignore[attr-defined]
        yield Api(c, str(secret))


def test_body_over_the_limit_is_413(small: Api) -> None:
    r = small.post("/v1/sessions", {"metadata": {"blob": "x" * 1200}})
    _assert_error(r, 413, "payload_too_large")
    assert r.headers["cache-control"] == "no-store"
    small.post("/v1/sessions", {"metadata": {"blob": "x" * 900}}, expect=201)
    assert len(small.get("/v1/sessions").json()["sessions"]) == 1


def test_streamed_body_over_the_limit_is_413(small: Api) -> None:
    """Without Content-Length (chunked upload) the limit still holds, with the same answer."""

    def chunks(n: int) -> Iterator[bytes]:
        yield b'{"metadata": {"blob": "'
        for _ in range(n):
            yield b"x" * 200
        yield b'"}}'

    headers = {"Authorization": f"Bearer {small.key}", "Content-Type": "application/json"}
    r = small.client.post("/v1/sessions", content=chunks(4), headers=headers)
    assert r.status_code == 201, r.text  # chunked bodies under the limit are fine
    r = small.client.post("/v1/sessions", content=chunks(6), headers=headers)
    _assert_error(r, 413, "payload_too_large")
    assert len(small.get("/v1/sessions").json()["sessions"]) == 1


@pytest.fixture
def tight(settings: Settings) -> Iterator[Api]:
    """An app whose note, annotation and approval limits are set to 10 bytes."""
    limits = Limits(note_body_bytes=10, annotation_body_bytes=10, approval_json_bytes=10)
    with TestClient(create_app(settings.model_copy(update={"limits": limits}))) as c:
        secret = c.app.state.ctx.db.write_sync(auth.bootstrap)  # type: ignore[attr-defined]
        yield Api(c, str(secret))


def test_configured_limits_are_the_ones_enforced(tight: Api) -> None:
    """The limits in ``Settings`` are the ones services check (no module constant shadows
    them): 10 bytes pass, 11 do not, with the configured number in the message."""
    sid = tight.post("/v1/sessions", {}, expect=201).json()["session"]["id"]
    base = f"/v1/sessions/{sid}"
    tight.post(f"{base}/notes", {"title": "n", "body": "x" * 10}, expect=201)
    r = tight.post(f"{base}/notes", {"title": "n", "body": "x" * 11}, expect=422)
    assert _fields(r) == ["body"]
    assert "at most 10 bytes" in r.text
    tight.put(f"{base}/files/a.txt", {"content": "one\ntwo\n"}, expect=200)
    target = {"path": "a.txt", "startLine": 1, "endLine": 1}
    tight.post(f"{base}/annotations", {"target": target, "body": "x" * 10}, expect=201)
    r = tight.post(f"{base}/annotations", {"target": target, "body": "x" * 11}, expect=422)
    assert "at most 10 bytes" in r.text
    tight.post(f"{base}/approvals", {"title": "t", "details": {"a": 1234}}, expect=201)
    r = tight.post(f"{base}/approvals", {"title": "t", "details": {"a": 12345}}, expect=422)
    assert "at most 10 bytes of JSON" in r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "t" * 501}, "title"),
        ({"tags": [f"t{i}" for i in range(51)]}, "tags"),
        ({"tags": ["ok", "t" * 101]}, "tags[1]"),
        ({"tags": [""]}, "tags[0]"),
        ({"metadata": {"blob": "x" * MIB}}, "metadata"),
        ({"context": {"blob": "x" * MIB}}, "context"),
    ],
    ids=["title-501", "51-tags", "tag-101", "empty-tag", "metadata-1mib", "context-1mib"],
)
def test_limits_on_create_are_422(api: Api, body: dict[str, Any], field: str) -> None:
    r = api.post("/v1/sessions", body, expect=422, code="validation_error")
    assert _fields(r) == [field]
    _no_sessions_created(api)


def test_limits_at_the_boundary_are_accepted(api: Api) -> None:
    s = api.session(
        title="t" * 500,
        tags=[f"t{i}" for i in range(49)] + ["x" * 100],
        metadata={"blob": "x" * (MIB - 100)},
    )
    assert len(s["title"]) == 500 and len(s["tags"]) == 50


def test_limits_on_updates_are_422(api: Api, sid: str) -> None:
    api.session()  # a second session must not count towards the first one's tags
    before = api.get(f"/v1/sessions/{sid}").json()
    path = f"/v1/sessions/{sid}"
    r = api.patch(path, {"title": "t" * 501}, expect=422, code="validation_error")
    assert _fields(r) == ["title"]
    api.patch(path, {"metadata": {"blob": "x" * MIB}}, expect=422, code="validation_error")
    api.patch(path, {"tags": ["t" * 101]}, expect=422, code="validation_error")
    api.patch(f"{path}/tags", {"set": [f"a{i}" for i in range(50)]}, expect=200)
    api.patch(f"{path}/tags", {"add": ["one-more"]}, expect=422, code="validation_error")
    big = {"context": {"blob": "x" * MIB}}
    api.put(f"{path}/context", big, expect=422, code="validation_error")
    api.patch(f"{path}/context", big, expect=422, code="validation_error")
    after = api.get(path).json()
    assert after["session"]["title"] == before["session"]["title"]
    assert len(after["session"]["tags"]) == 50 and after["session"]["context"] == {}


# -- query parameters -------------------------------------------------------------------------

LIST_PATHS = ["/v1/sessions", "/v1/workspaces", "/v1/keys", "/v1/sessions/{sid}/events"]


# The last cursor decodes to {"k": "nope"}: a cursor of another listing.
BAD_PAGES = ["limit=0", "limit=201", "limit=-1", "limit=abc", "limit=1.5", "cursor=garbage!!"]


@pytest.mark.parametrize("path", LIST_PATHS)
@pytest.mark.parametrize("query", [*BAD_PAGES, "cursor=eyJrIjoibm9wZSJ9"])
def test_bad_pagination_is_422(
    client: TestClient, tenant: Tenant, sid: str, path: str, query: str
) -> None:
    admin = Api(client, tenant.admin)
    url = path.format(sid=sid)
    r = admin.get(f"{url}?{query}", expect=422, code="validation_error")
    assert _fields(r) == [query.split("=")[0]]
    admin.get(f"{url}?limit=200", expect=200)
    admin.get(f"{url}?limit=1", expect=200)


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=bogus", "status"), ("status=active,bogus", "status"), ("sort=x", "sort")],
)
def test_bad_session_filters_are_422(api: Api, query: str, field: str) -> None:
    r = api.get(f"/v1/sessions?{query}", expect=422, code="validation_error")
    assert _fields(r) == [field]


# -- media type, routes, methods ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/sessions"), ("PATCH", "/v1/sessions/{sid}"), ("POST", "/v1/workspaces")],
)
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(api: Api, sid: str, method: str, path: str, ctype: str) -> None:
    content = b'{"title": "x", "id": "team"}' if "workspaces" not in path else b'{"id": "team"}'
    r = _raw(api, method, path.format(sid=sid), content, ctype)
    _assert_error(r, 415, "unsupported_media_type")
    api.get("/v1/workspaces/team", expect=404)
    assert api.get(f"/v1/sessions/{sid}").json()["session"]["title"] == "t"
    _no_sessions_created(api, 1)


def test_json_with_charset_is_accepted(api: Api) -> None:
    r = _raw(api, "POST", "/v1/sessions", b'{"title": "x"}', "application/json; charset=utf-8")
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("GET", "/nope"),
        ("POST", "/v1/widgets"),
        ("GET", "/v1/sessions/{sid}/x"),
    ],
)
@pytest.mark.parametrize("authenticated", [True, False])
def test_unknown_route_is_404(
    api: Api, sid: str, method: str, path: str, authenticated: bool
) -> None:
    headers = {"Authorization": f"Bearer {api.key}"} if authenticated else {}
    r = api.client.request(method, path.format(sid=sid), headers=headers)
    _assert_error(r, 404, "not_found")
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/sessions", {"GET", "POST"}),
        ("DELETE", "/v1/workspaces", {"GET", "POST"}),
        ("POST", "/v1/sessions/{sid}", {"GET", "PATCH", "DELETE"}),
        ("DELETE", "/v1/sessions/{sid}/context", {"GET", "PUT", "PATCH"}),
        ("GET", "/v1/sessions/{sid}/close", {"POST"}),
    ],
)
def test_wrong_method_is_405_with_allow(
    api: Api, sid: str, method: str, path: str, allowed: set[str]
) -> None:
    r = api.request(method, path.format(sid=sid), expect=405)
    body = _assert_error(r, 405, r.json()["code"])
    assert method in body["error"]
    allow = {m.strip() for m in r.headers["allow"].split(",")}
    assert allowed <= allow and method not in allow, r.headers["allow"]
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/sessions/{sid}:merge", "POST"),
        ("/v1/sessions/{sid}:mergeFrom", "POST"),
        ("/v1/sessions/{sid}", "DELETE, GET, PATCH"),
    ],
)
@pytest.mark.parametrize("method", ["OPTIONS", "PUT"])
def test_allow_lists_the_methods_of_the_matched_path(
    api: Api, sid: str, method: str, path: str, allow: str
) -> None:
    # (``/v1/sessions/{session_id}``'s pattern matches ``.../x:merge`` too, and its
    # methods are not ``:merge``'s)
    r = api.request(method, path.format(sid=sid), expect=405, code="method_not_allowed")
    assert r.headers["allow"] == allow


# -- headers on every response --------------------------------------------------------------


def test_every_response_is_no_store(client: TestClient, tenant: Tenant, api: Api, sid: str) -> None:
    responses = [
        client.get("/healthz"),
        client.get("/openapi.json"),
        api.get(f"/v1/sessions/{sid}", expect=200),
        api.get("/v1/sessions", expect=200),
        api.post("/v1/sessions", {}, expect=201),
        api.post("/v1/workspaces", {"id": "gone"}, expect=201),
        api.delete("/v1/workspaces/gone", expect=204),
        _raw(api, "POST", "/v1/sessions", b"{", "application/json"),
        client.get("/v1/sessions"),
        Api(client, tenant.read).post("/v1/sessions", {}, expect=403),
        api.get("/v1/sessions/ses_missing", expect=404),
        api.delete("/v1/workspaces/default", expect=409),
        api.post("/v1/sessions", {"bad": 1}, expect=422),
        api.request("PUT", "/v1/sessions", expect=405),
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 200, 201, 201, 204, 400, 401, 403, 404, 409, 422, 405]
    for r in responses:
        assert r.headers.get("cache-control") == "no-store", (r.request.url, r.headers)


def test_request_id_is_echoed(api: Api, sid: str) -> None:
    for path, status in ((f"/v1/sessions/{sid}", 200), ("/v1/sessions/ses_missing", 404)):
        r = api.get(path, headers={"X-Request-Id": "trace-abc-123"}, expect=status)
        assert r.headers["x-request-id"] == "trace-abc-123"
    r = api.client.get("/v1/sessions", headers={"X-Request-Id": "trace-401"})
    assert r.status_code == 401 and r.headers["x-request-id"] == "trace-401"
    a = api.get("/v1/sessions").headers["x-request-id"]
    b = api.get("/v1/sessions").headers["x-request-id"]
    assert a and b and a != b  # generated when the client sends none
