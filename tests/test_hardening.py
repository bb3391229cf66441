"""Inputs an attacker (or a sloppy client) sends: NaN, lone surrogates, NUL, huge ids,
bad path bytes, a bug's 500 — never a 500 that breaks the connection, never a partial
write, and the same answer on SQLite and PostgreSQL.

The route-table tests cover every route the app has, so a new route is covered the day it
appears.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.convertors import PathConvertor

from sessiond.http.routing import StrictRoute, flatten_routes
from sessiond.settings import Settings
from tests.support.api import Api, Tenant
from tests.support.live import live_server
from tests.test_errors import small  # noqa: F401 (the fixture: JSON bodies up to 1,000 bytes)

MAX_EVENT_ID = 2**63 - 1


def _api_routes(client: TestClient) -> list[APIRoute]:
    return [r for r in flatten_routes(client.app.routes) if isinstance(r, APIRoute)]  # type: ignore[attr-defined]


def _fill(route: APIRoute, value: str) -> str:
    """The route's path with every parameter replaced by ``value``."""
    return re.sub(r"\{[^}]+\}", value, route.path)


def _raw(api: Api, method: str, path: str, body: bytes) -> Any:
    headers = {"content-type": "application/json"}
    return api.request(method, path, content=body, headers=headers)


@pytest.fixture
def sid(api: Api) -> str:
    return api.session(title="t", context={"k": 1})["id"]


def test_every_api_route_is_strict(client: TestClient) -> None:
    routes = _api_routes(client)
    assert len(routes) > 50
    loose = [r.path for r in routes if not isinstance(r, StrictRoute)]
    assert loose == [], f"routes without StrictRoute (use APIRouter(route_class=...)): {loose}"


# -- bodies ---------------------------------------------------------------------------------

BAD_JSON = [
    (b'{"x": NaN}', 400, "invalid_json"),
    (b'{"x": Infinity}', 400, "invalid_json"),
    (b'{"x": [-Infinity]}', 400, "invalid_json"),
    (b'{"x": 1e400}', 400, "invalid_json"),  # parses to inf
    (b'{"x": "\\ud800"}', 400, "invalid_json"),
    (b'{"\\udfff": 1}', 400, "invalid_json"),
    (b'{"x": {"y": ["ok", "a\\u0000b"]}}', 422, "validation_error"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_JSON)
def test_every_json_body_route_refuses_bad_values(
    client: TestClient, api: Api, body: bytes, status: int, code: str
) -> None:
    """Driven from the route table: every route that takes a JSON body."""
    routes = [r for r in _api_routes(client) if r.body_field is not None]
    assert len(routes) > 20
    for route in routes:
        for method in sorted(route.methods):
            r = _raw(api, method, _fill(route, "x"), body)
            assert (r.status_code, r.json()["code"]) == (status, code), (method, route.path, r.text)
            if code == "validation_error":
                assert r.json()["details"]["errors"][0]["field"] == "x.y[1]", r.text


def test_nothing_is_stored_from_a_refused_body(api: Api, sid: str) -> None:
    before = api.get(f"/v1/sessions/{sid}").json()["session"]
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    for method, path, body in [
        ("PUT", f"/v1/sessions/{sid}/context", b'{"context": {"a": NaN}}'),
        ("PATCH", f"/v1/sessions/{sid}/context", b'{"context": {"a": Infinity}}'),
        ("PATCH", f"/v1/sessions/{sid}", b'{"title": "\\ud800"}'),
        ("PATCH", f"/v1/sessions/{sid}", b'{"title": "a\\u0000"}'),
        ("PATCH", f"/v1/sessions/{sid}/tags", b'{"add": ["a\\u0000"]}'),
        ("POST", f"/v1/sessions/{sid}/events", b'{"type": "custom.x", "data": "\\udc00"}'),
        ("POST", f"/v1/sessions/{sid}/messages", b'{"role": "user", "content": "\\ud83d"}'),
        (
            "POST",
            f"/v1/sessions/{sid}/messages",
            b'{"role": "user", "content": "hi", "metadata": {"n": NaN}}',
        ),
        (
            "POST",
            f"/v1/sessions/{sid}/files:batch",
            b'{"operations": [{"op": "write", "path": "a\\ud800", "content": "x"}]}',
        ),
        (
            "POST",
            f"/v1/sessions/{sid}/files:batch",
            b'{"operations": [{"op": "write", "path": "a.txt", "content": "\\ud800"}]}',
        ),
    ]:
        r = _raw(api, method, path, body)
        assert r.status_code in (400, 422), (method, path, r.text)
    after = api.get(f"/v1/sessions/{sid}").json()["session"]
    assert after == before
    assert api.get(f"/v1/sessions/{sid}/events").json()["events"] == events
    assert api.get(f"/v1/sessions/{sid}/messages").json()["messages"] == []
    assert api.get(f"/v1/sessions/{sid}/files").json()["entries"] == []
    assert api.get(f"/v1/sessions/{sid}/context").json()["context"] == {"k": 1}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/sessions", {"title": "a\x00b"}, "title"),
        ("/v1/sessions", {"tags": ["ok", "\x00"]}, "tags[1]"),
        ("/v1/keys", {"name": "k\x00", "role": "read"}, "name"),
        ("/v1/workspaces", {"id": "w", "name": "\x00"}, "name"),
    ],
)
def test_nul_in_a_body_string_is_422_naming_it(
    client: TestClient, tenant: Tenant, path: str, body: dict[str, Any], field: str
) -> None:
    admin = tenant.api(client, "admin")
    r = admin.post(path, body, expect=422, code="validation_error")
    assert r.json()["details"]["errors"] == [
        {"field": field, "message": r.json()["details"]["errors"][0]["message"]}
    ]
    assert "NUL" in r.json()["error"]


def test_nul_in_session_owned_strings(api: Api, sid: str) -> None:
    for path, body, field in [
        (f"/v1/sessions/{sid}/notes", {"title": "\x00", "body": "b"}, "title"),
        (f"/v1/sessions/{sid}/tasks", {"content": "do\x00"}, "content"),
        (f"/v1/sessions/{sid}/approvals", {"title": "ok?\x00"}, "title"),
        (f"/v1/sessions/{sid}/checkpoints", {"label": "\x00"}, "label"),
        (f"/v1/sessions/{sid}/commit", {"message": "m\x00"}, "message"),
    ]:
        r = api.post(path, body, expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"] == field, r.text
    assert api.get(f"/v1/sessions/{sid}/notes").json()["notes"] == []
    assert api.get(f"/v1/sessions/{sid}/tasks").json()["tasks"] == []


# -- URLs -----------------------------------------------------------------------------------


def test_nul_or_bad_utf8_in_any_path_parameter(client: TestClient, api: Api) -> None:
    """Driven from the route table: every route with a path parameter, every method."""
    routes = [r for r in _api_routes(client) if r.param_convertors]
    assert len(routes) > 40
    for route in routes:
        file_route = any(isinstance(c, PathConvertor) for c in route.param_convertors.values())
        for bad in ("ses_%00", "%00", "x%c0%af"):
            for method in sorted(route.methods):
                r = api.request(method, _fill(route, bad))
                expected = (422, "invalid_path") if file_route else (404, "not_found")
                assert (r.status_code, r.json()["code"]) == expected, (method, route.path, r.text)


def test_nul_or_bad_utf8_in_any_query_parameter(client: TestClient, api: Api) -> None:
    """Driven from the route table: every declared query parameter of every GET route."""
    seen = 0
    for route in _api_routes(client):
        if "GET" not in route.methods:
            continue
        names = {p.alias for p in route.dependant.query_params}
        for dep in route.dependant.dependencies:
            names |= {p.alias for p in dep.query_params}
        for name in sorted(names):
            for bad in ("a%00b", "%ff"):
                r = api.get(_fill(route, "x") + f"?{name}={bad}")
                assert r.status_code == 422, (route.path, name, r.text)
                assert r.json()["details"]["errors"][0]["field"] == name, r.text
                seen += 1
    assert seen > 40


def test_known_nul_urls_answer_the_same_on_both_backends(api: Api, sid: str) -> None:
    for path in [
        "/v1/sessions/ses_%00",
        f"/v1/sessions/{sid}/messages/msg_%00",
        f"/v1/sessions/{sid}/notes/%00",
        f"/v1/sessions/{sid}/checkpoints/cp_%00",
        f"/v1/sessions/{sid}/approvals/apr_%00",
        "/v1/workspaces/%00",
    ]:
        api.get(path, expect=404, code="not_found")
    api.delete("/v1/keys/key_%00", expect=404, code="not_found")
    for query in ["workspaceId", "q", "tag", "parentId"]:
        api.get(f"/v1/sessions?{query}=%00", expect=422, code="validation_error")
    api.get("/v1/notes?sessionId=%00", expect=422)
    api.get(f"/v1/sessions/{sid}/files?at=cp_%00", expect=422)


def test_file_paths_with_bad_bytes_or_absolute_are_invalid_path(api: Api, sid: str) -> None:
    api.get(f"/v1/sessions/{sid}/files?path=/etc", expect=422, code="invalid_path")
    api.put(f"/v1/sessions/{sid}/files/..%c0%afx", content=b"x", expect=422, code="invalid_path")
    api.put(f"/v1/sessions/{sid}/files/a%00b", content=b"x", expect=422, code="invalid_path")
    assert api.get(f"/v1/sessions/{sid}/files").json()["entries"] == []
    # A valid non-ASCII name still works.
    api.put(f"/v1/sessions/{sid}/files/caf%C3%A9.txt", content=b"x", expect=200)
    names = [e["path"] for e in api.get(f"/v1/sessions/{sid}/files").json()["entries"]]
    assert names == ["café.txt"]


# -- event ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [str(MAX_EVENT_ID + 1), "9" * 40, "²", "-1"])
def test_event_ids_out_of_range_are_422(api: Api, sid: str, after: str) -> None:
    api.get(f"/v1/sessions/{sid}/events?after={after}", expect=422, code="validation_error")
    api.get(f"/v1/sessions/{sid}/events?cursor={after}", expect=422, code="validation_error")
    api.get(f"/v1/sessions/{sid}/events/stream?after={after}", expect=422)
    api.get(f"/v1/events/stream?after={after}", expect=422)
    if after.isascii():
        api.get(f"/v1/sessions/{sid}/events/stream", headers={"Last-Event-ID": after}, expect=422)
        api.get("/v1/events/stream", headers={"Last-Event-ID": after}, expect=422)


def test_largest_event_id_is_accepted(api: Api, sid: str) -> None:
    r = api.get(f"/v1/sessions/{sid}/events?after={MAX_EVENT_ID}", expect=200)
    assert r.json() == {"events": [], "nextCursor": None}


def test_huge_if_match_is_a_mismatch_not_a_500(api: Api, sid: str) -> None:
    api.patch(
        f"/v1/sessions/{sid}",
        {"title": "x"},
        headers={"If-Match": '"' + "9" * 30 + '"'},
        expect=412,
    )
    api.patch(
        f"/v1/sessions/{sid}",
        {"title": "x"},
        headers={"If-Match": "²".encode("latin-1")},
        expect=412,
    )  # type: ignore[dict-item]


# -- annotations and keys -------------------------------------------------------------------


def test_annotation_checkpoint_must_be_the_sessions(
    client: TestClient, api: Api, other: Tenant, sid: str
) -> None:
    theirs = other.api(client).session()["id"]
    their_cp = other.api(client).post(f"/v1/sessions/{theirs}/checkpoints", {}, expect=201)
    mine = api.post(f"/v1/sessions/{sid}/checkpoints", {}, expect=201).json()["checkpoint"]
    target = {"path": "a.py", "startLine": 1, "endLine": 2}
    url = f"/v1/sessions/{sid}/annotations"
    foreign = {**target, "checkpointId": their_cp.json()["checkpoint"]["id"]}
    api.post(url, {"target": foreign, "body": "b"}, expect=404, code="not_found")
    missing = {**target, "checkpointId": "cp_01HZZZZZZZZZZZZZZZZZZZZZZZ"}
    api.post(url, {"target": missing, "body": "b"}, expect=404, code="not_found")
    ok = api.post(url, {"target": {**target, "checkpointId": mine["id"]}, "body": "b"}, expect=201)
    ann = ok.json()["annotation"]
    api.patch(f"{url}/{ann['id']}", {"target": foreign}, expect=404, code="not_found")
    assert [a["id"] for a in api.get(url).json()["annotations"]] == [ann["id"]]
    assert api.get(url).json()["annotations"][0]["target"]["checkpointId"] == mine["id"]


def test_the_last_admin_key_cannot_be_revoked(client: TestClient, tenant: Tenant) -> None:
    admin = tenant.api(client, "admin")
    me = admin.get("/v1/me", expect=200).json()["key"]["id"]
    r = admin.delete(f"/v1/keys/{me}", expect=409, code="conflict")
    assert "last admin key" in r.json()["error"]
    admin.get("/v1/me", expect=200)  # still works
    second = admin.post("/v1/keys", {"name": "second", "role": "admin"}, expect=201).json()
    admin.delete(f"/v1/keys/{me}", expect=204)
    admin.get("/v1/me", expect=401)
    other_admin = Api(client, second["secret"])
    r = other_admin.delete(f"/v1/keys/{second['key']['id']}", expect=409, code="conflict")
    # Non-admin keys are revoked as before.
    write_id = Api(client, tenant.write).get("/v1/me").json()["key"]["id"]
    other_admin.delete(f"/v1/keys/{write_id}", expect=204)


# -- a bug's 500 keeps the connection -------------------------------------------------------


def _http(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request on ``sock`` and read exactly one response (Content-Length bodies)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return status, headers, rest[:length]


def test_a_500_is_complete_and_keeps_the_connection(settings: Settings) -> None:
    with live_server(settings) as live:

        @live.app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("planted bug")

        host, port = urlsplit(live.url).hostname, urlsplit(live.url).port
        with socket.create_connection((host, port), timeout=10) as sock:
            req = b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
            status, headers, body = _http(sock, req)
            assert status == 500
            error = json.loads(body)
            assert error["code"] == "internal" and error["status"] == "error"
            assert error["details"]["requestId"] == headers["x-request-id"]
            assert headers.get("connection", "keep-alive") != "close"
            status, _h, body = _http(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (status, json.loads(body)) == (200, {"status": "ok"})


# -- raw-body routes are decided by the matched route ---------------------------------------


def test_a_path_that_looks_like_a_file_route_is_still_json(api: Api, sid: str) -> None:
    """A cache key with ``/files/`` in it is a JSON route: JSON content type required and
    the JSON body limit applies (the file limit is for file and git routes only)."""
    url = f"/v1/sessions/{sid}/cache/a/files/b"
    api.put(url, content=b"x", headers={"content-type": "text/plain"}, expect=415)
    api.put(url, {"value": 1}, expect=201)  # created
    api.put(f"/v1/sessions/{sid}/files/a/git/b", content=b"raw", expect=200)  # a file route
    api.put(
        f"/v1/sessions/{sid}/files/doc.txt",
        content=b"x",
        headers={"content-type": "text/plain"},
        expect=200,
    )


def test_the_json_limit_holds_on_a_path_with_files_in_it(small: Api) -> None:  # noqa: F811
    sid = small.session()["id"]
    big = b'{"value": "' + b"x" * 3000 + b'"}'
    small.put(
        f"/v1/sessions/{sid}/cache/k/files/x",
        content=big,
        headers={"content-type": "application/json"},
        expect=413,
        code="payload_too_large",
    )
    small.put(f"/v1/sessions/{sid}/files/big.bin", content=b"y" * 3000, expect=200)


def test_an_empty_source_session_id_is_422(api: Api) -> None:
    for source in ({"sessionId": ""}, {"session_id": ""}, {"sessionId": "x", "checkpointId": ""}):
        r = api.post("/v1/sessions", {"source": source}, expect=422, code="validation_error")
        assert r.json()["details"]["errors"][0]["field"].startswith("source."), r.text
    assert api.get("/v1/sessions").json()["sessions"] == []
