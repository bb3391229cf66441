"""Every keyset list follows one rule: ``nextCursor`` is set exactly when another page has
rows, and walking the cursors yields every item once, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api import Api, Tenant

Make = Callable[[Api, str, int], None]


def _notes(api: Api, sid: str, i: int) -> None:
    api.post(f"/v1/sessions/{sid}/notes", {"title": f"n{i}", "body": "b"}, expect=201)


def _annotations(api: Api, sid: str, i: int) -> None:
    target = {"path": "a.py", "startLine": 1, "endLine": 1}
    api.post(f"/v1/sessions/{sid}/annotations", {"target": target, "body": f"a{i}"}, expect=201)


def _checkpoints(api: Api, sid: str, i: int) -> None:
    api.post(f"/v1/sessions/{sid}/checkpoints", {"label": f"c{i}"}, expect=201)


def _approvals(api: Api, sid: str, i: int) -> None:
    api.post(f"/v1/sessions/{sid}/approvals", {"title": f"ok {i}?"}, expect=201)


def _commits(api: Api, sid: str, i: int) -> None:
    api.put(f"/v1/sessions/{sid}/files/f{i}.txt", {"content": f"{i}\n"}, expect=200)
    api.post(f"/v1/sessions/{sid}/commit", {"message": f"c{i}"}, expect=201)


def _cache(api: Api, sid: str, i: int) -> None:
    api.put(f"/v1/sessions/{sid}/cache/k{i}", {"value": i}, expect=201)


def _sessions(api: Api, sid: str, i: int) -> None:
    api.session()


def _keys(api: Api, sid: str, i: int) -> None:
    api.post("/v1/keys", {"name": f"k{i}", "role": "read"}, expect=201)


def _workspaces(api: Api, sid: str, i: int) -> None:
    api.post("/v1/workspaces", {"id": f"w{i}"}, expect=201)


def _messages(api: Api, sid: str, i: int) -> None:
    api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "content": f"m{i}"}, expect=201)


# (name, the list's URL below the session or "/v1/..." for an account-wide list, the
# items' key in the answer, how to add one item, the field naming an item)
LISTS: list[tuple[str, str, str, Make, str]] = [
    ("notes", "notes", "notes", _notes, "id"),
    ("annotations", "annotations", "annotations", _annotations, "id"),
    ("checkpoints", "checkpoints", "checkpoints", _checkpoints, "id"),
    ("approvals", "approvals", "approvals", _approvals, "id"),
    ("commits", "commits", "commits", _commits, "id"),
    ("cache", "cache", "entries", _cache, "key"),
    ("messages", "messages", "messages", _messages, "id"),
    ("sessions", "/v1/sessions", "sessions", _sessions, "id"),
    ("keys", "/v1/keys", "keys", _keys, "id"),
    ("workspaces", "/v1/workspaces", "workspaces", _workspaces, "id"),
]


def _walk(api: Api, url: str, key: str, limit: int) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = api.get(url, params=params, expect=200).json()
        pages.append(body[key])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert body[key], f"{url}: a cursor to an empty page"


@pytest.mark.parametrize(
    ("path", "key", "make", "name"), [x[1:] for x in LISTS], ids=[x[0] for x in LISTS]
)
def test_next_cursor_only_when_a_next_page_has_rows(
    client: TestClient, tenant: Tenant, path: str, key: str, make: Make, name: str
) -> None:
    api = tenant.api(client, "admin")  # keys are listed and made by admins
    sid = api.session()["id"]
    url = path if path.startswith("/") else f"/v1/sessions/{sid}/{path}"

    def count() -> int:
        return len(api.get(url, params={"limit": 200}).json()[key])

    i = 0
    while count() < 4:  # account-wide lists start with a session, keys, a workspace
        make(api, sid, i)
        i += 1
    pages = _walk(api, url, key, 2)
    assert [len(p) for p in pages] == [2, 2]  # exactly full: no third, empty page
    make(api, sid, i)
    pages = _walk(api, url, key, 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [item[name] for page in pages for item in page]
    assert len(set(ids)) == 5
    everything = api.get(url, params={"limit": 200}).json()[key]
    assert ids == [item[name] for item in everything]
    api.get(url, params={"cursor": "bm90IG91cnM"}, expect=422, code="validation_error")


def test_events_follow_the_same_rule(api: Api) -> None:
    sid = api.session()["id"]
    url = f"/v1/sessions/{sid}/events"
    total = len(api.get(url, params={"limit": 200}).json()["events"])
    pages = _walk(api, url, "events", total)
    assert [len(p) for p in pages] == [total]  # one full page, no cursor to an empty one
    _notes(api, sid, 0)
    pages = _walk(api, url, "events", total)
    assert [len(p) for p in pages] == [total, 1]
