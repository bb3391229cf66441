"""Every keyset list follows one rule: ``nextCursor`` is set exactly when another page has
rows, and walking the cursors yields every item once, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.api import Api

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


LISTS: list[tuple[str, str, Make]] = [
    ("notes", "notes", _notes),
    ("annotations", "annotations", _annotations),
    ("checkpoints", "checkpoints", _checkpoints),
    ("approvals", "approvals", _approvals),
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


@pytest.mark.parametrize(("path", "key", "make"), LISTS, ids=[k for k, _, _ in LISTS])
def test_next_cursor_only_when_a_next_page_has_rows(
    api: Api, path: str, key: str, make: Make
) -> None:
    sid = api.session()["id"]
    url = f"/v1/sessions/{sid}/{path}"
    for i in range(4):
        make(api, sid, i)
    pages = _walk(api, url, key, 2)
    assert [len(p) for p in pages] == [2, 2]  # exactly full: no third, empty page
    make(api, sid, 4)
    pages = _walk(api, url, key, 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [item["id"] for page in pages for item in page]
    assert len(set(ids)) == 5
    everything = api.get(url, params={"limit": 200}).json()[key]
    assert ids == [item["id"] for item in everything]
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
