"""A thin test client: a key, JSON in and out, and the assertions every test repeats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from sessiond.auth import service as auth


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
