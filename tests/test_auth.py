"""Authentication and roles: keys in both headers, 401 for missing/unknown/revoked keys,
``/v1/me``, key management (admin only, secret shown once, paginated list) and the role
matrix (``read`` reads, ``write`` writes, only ``admin`` manages keys)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api import Api, Tenant

KEY_FIELDS = {"id", "name", "role", "prefix", "createdAt", "revokedAt"}


@pytest.fixture
def admin(client: TestClient, tenant: Tenant) -> Api:
    return Api(client, tenant.admin)


def _key_id(client: TestClient, secret: str) -> str:
    return str(Api(client, secret).get("/v1/me", expect=200).json()["key"]["id"])


# -- 401 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk_not_a_real_key"},
        {"x-api-key": "sk_not_a_real_key"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["missing", "unknown-bearer", "unknown-x-api-key", "empty-bearer", "basic-scheme"],
)
@pytest.mark.parametrize("path", ["/v1/me", "/v1/sessions", "/v1/workspaces", "/v1/keys"])
def test_no_valid_key_is_401(
    client: TestClient, tenant: Tenant, headers: dict[str, str], path: str
) -> None:
    r = client.get(path, headers=headers)
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["status"] == "error" and body["error"] and body["code"] == "unauthorized"


def test_unauthenticated_write_creates_nothing(client: TestClient, api: Api) -> None:
    r = client.post("/v1/sessions", json={"title": "x"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert api.get("/v1/sessions", expect=200).json()["sessions"] == []


def test_x_api_key_header_works_like_bearer(client: TestClient, tenant: Tenant) -> None:
    by_header = client.get("/v1/me", headers={"x-api-key": tenant.write})
    by_bearer = client.get("/v1/me", headers={"Authorization": f"Bearer {tenant.write}"})
    assert by_header.status_code == 200 and by_bearer.status_code == 200
    assert by_header.json() == by_bearer.json()
    r = client.post("/v1/sessions", json={}, headers={"x-api-key": tenant.write})
    assert r.status_code == 201, r.text


def test_revoked_key_is_401(client: TestClient, admin: Api) -> None:
    created = admin.post("/v1/keys", {"name": "ci", "role": "write"}, expect=201).json()
    temp = Api(client, created["secret"])
    temp.get("/v1/me", expect=200)
    admin.delete(f"/v1/keys/{created['key']['id']}", expect=204)
    temp.get("/v1/me", expect=401, code="unauthorized")
    temp.post("/v1/sessions", {}, expect=401, code="unauthorized")
    r = client.get("/v1/me", headers={"x-api-key": created["secret"]})
    assert r.status_code == 401
    listed = {k["id"]: k for k in admin.get("/v1/keys", expect=200).json()["keys"]}
    assert listed[created["key"]["id"]]["revokedAt"] is not None
    admin.get("/v1/me", expect=200)  # other keys are unaffected


def test_revoking_a_missing_key_is_404(admin: Api) -> None:
    admin.delete("/v1/keys/key_01J00000000000000000000000", expect=404, code="not_found")


# -- identity and key management ------------------------------------------------------------


def test_me_describes_account_and_key(client: TestClient, tenant: Tenant) -> None:
    for role in ("admin", "write", "read"):
        secret = getattr(tenant, role)
        body = Api(client, secret).get("/v1/me", expect=200).json()
        assert set(body) == {"account", "key"}
        assert body["account"] == {"id": tenant.account_id, "name": "default"}
        key = body["key"]
        assert set(key) == {"id", "name", "role", "prefix"}
        assert key["id"].startswith("key_") and key["role"] == role
        assert key["prefix"] and secret.startswith(key["prefix"]) and key["prefix"] != secret


def test_create_key_returns_secret_once(client: TestClient, admin: Api) -> None:
    r = admin.post("/v1/keys", {"name": "deploy bot", "role": "read"}, expect=201)
    body = r.json()
    assert set(body) == {"key", "secret"}
    key, secret = body["key"], body["secret"]
    assert set(key) == KEY_FIELDS
    assert key["id"].startswith("key_") and key["name"] == "deploy bot" and key["role"] == "read"
    assert secret.startswith("sk_") and secret.startswith(key["prefix"]) and len(secret) > 30
    assert key["createdAt"].endswith("Z") and key["revokedAt"] is None
    me = Api(client, secret).get("/v1/me", expect=200).json()["key"]
    assert me == {"id": key["id"], "name": "deploy bot", "role": "read", "prefix": key["prefix"]}
    listing = admin.get("/v1/keys", expect=200)
    assert secret not in listing.text
    assert next(k for k in listing.json()["keys"] if k["id"] == key["id"]) == key


def test_key_list_never_shows_secrets(client: TestClient, tenant: Tenant, admin: Api) -> None:
    r = admin.get("/v1/keys", expect=200)
    keys = r.json()["keys"]
    assert len(keys) == 3 and r.json()["nextCursor"] is None
    for k in keys:
        assert set(k) == KEY_FIELDS
    for secret in (tenant.admin, tenant.write, tenant.read):
        assert secret not in r.text
    assert {k["role"] for k in keys} == {"admin", "write", "read"}


def test_key_list_paginates(admin: Api) -> None:
    for i in range(2):
        admin.post("/v1/keys", {"name": f"extra-{i}", "role": "read"}, expect=201)
    everything = [k["id"] for k in admin.get("/v1/keys?limit=200").json()["keys"]]
    assert len(everything) == 5
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        path = "/v1/keys?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = admin.get(path, expect=200).json()
        assert len(page["keys"]) == 1
        seen += [k["id"] for k in page["keys"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == everything


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "role": "owner"},
        {"name": "x", "role": "ADMIN"},
        {"name": "x"},
        {"role": "read"},
        {"name": "x", "role": "read", "scope": "all"},
        {"name": 5, "role": "read"},
    ],
    ids=["unknown-role", "uppercase-role", "no-role", "no-name", "unknown-field", "int-name"],
)
def test_create_key_validation(admin: Api, body: dict[str, Any]) -> None:
    r = admin.post("/v1/keys", body, expect=422, code="validation_error")
    assert r.json()["details"]["errors"]
    assert len(admin.get("/v1/keys", expect=200).json()["keys"]) == 3


# -- role matrix ----------------------------------------------------------------------------

# (method, path, body); ``{sid}`` / ``{key}`` are filled in with real ids.
WRITE_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/sessions", {"title": "new"}),
    ("PATCH", "/v1/sessions/{sid}", {"title": "changed"}),
    ("DELETE", "/v1/sessions/{sid}", None),
    ("PATCH", "/v1/sessions/{sid}/tags", {"add": ["t"]}),
    ("PUT", "/v1/sessions/{sid}/context", {"context": {"a": 2}}),
    ("PATCH", "/v1/sessions/{sid}/context", {"context": {"a": 2}}),
    ("POST", "/v1/sessions/{sid}/close", None),
    ("POST", "/v1/sessions/{sid}/events", {"type": "custom.x", "data": {}}),
    ("POST", "/v1/workspaces", {"id": "team-z"}),
    ("PATCH", "/v1/workspaces/team-a", {"name": "changed"}),
    ("DELETE", "/v1/workspaces/team-a", None),
]
KEY_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"name": "x", "role": "read"}),
    ("DELETE", "/v1/keys/{key}", None),
]
READ_ROUTES = [
    "/v1/me",
    "/v1/sessions",
    "/v1/sessions/{sid}",
    "/v1/sessions/{sid}/context",
    "/v1/sessions/{sid}/events",
    "/v1/workspaces",
    "/v1/workspaces/team-a",
]


def _ids(routes: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{method} {path}" for method, path, _ in routes]


@pytest.fixture
def world(client: TestClient, tenant: Tenant, admin: Api) -> dict[str, str]:
    """A session with context, a workspace, and the write key's id, owned by ``tenant``."""
    sid = admin.session(title="t", context={"a": 1})["id"]
    admin.post("/v1/workspaces", {"id": "team-a", "name": "A"}, expect=201)
    return {"sid": sid, "key": _key_id(client, tenant.write)}


def _state(admin: Api, sid: str) -> dict[str, Any]:
    return {
        "sessions": admin.get("/v1/sessions?status=active,closed").json(),
        "session": admin.get(f"/v1/sessions/{sid}").json(),
        "context": admin.get(f"/v1/sessions/{sid}/context").json(),
        "events": admin.get(f"/v1/sessions/{sid}/events").json(),
        "workspaces": admin.get("/v1/workspaces").json(),
        "keys": admin.get("/v1/keys").json(),
    }


@pytest.mark.parametrize("path", READ_ROUTES)
def test_read_key_can_read(
    client: TestClient, tenant: Tenant, world: dict[str, str], path: str
) -> None:
    Api(client, tenant.read).get(path.format(**world), expect=200)


ROLE_DENIALS = [("read", r) for r in WRITE_ROUTES + KEY_ROUTES] + [("write", r) for r in KEY_ROUTES]


@pytest.mark.parametrize(
    ("role", "route"),
    ROLE_DENIALS,
    ids=[f"{role} {method} {path}" for role, (method, path, _) in ROLE_DENIALS],
)
def test_role_cannot_go_beyond_its_rights(
    client: TestClient,
    tenant: Tenant,
    admin: Api,
    world: dict[str, str],
    role: str,
    route: tuple[str, str, Any],
) -> None:
    """read keys cannot write; write keys cannot manage keys; a refusal changes nothing."""
    method, path, body = route
    before = _state(admin, world["sid"])
    caller = Api(client, getattr(tenant, role))
    caller.request(method, path.format(**world), json=body, expect=403, code="forbidden")
    assert _state(admin, world["sid"]) == before
    caller.get("/v1/me", expect=200)


def test_write_and_admin_keys_can_write(client: TestClient, tenant: Tenant) -> None:
    for role in ("write", "admin"):
        Api(client, getattr(tenant, role)).post("/v1/sessions", {"title": role}, expect=201)
