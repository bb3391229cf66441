"""Merge of forks: clean, conflicting (each strategy), up to date, a second merge that
brings only what is new, mergeFrom, and the 409 that writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api

BASE = b"line 1\nline 2\nline 3\nline 4\nline 5\n"


def put(api: Api, sid: str, path: str, data: bytes) -> None:
    api.put(f"/v1/sessions/{sid}/files/{path}", content=data, expect=200)


def read(api: Api, sid: str, path: str) -> bytes:
    return api.get(f"/v1/sessions/{sid}/files/{path}", expect=200).content


def fork_pair(api: Api) -> tuple[str, str]:
    parent = api.post(
        "/v1/sessions", {"source": {"files": {"a.txt": BASE.decode(), "b.txt": "b\n"}}}, expect=201
    ).json()["session"]["id"]
    child = api.post(f"/v1/sessions/{parent}/fork", expect=201).json()["session"]["id"]
    return parent, child


def merge(api: Api, child: str, strategy: str = "fail", **kw: Any) -> Any:
    return api.post(f"/v1/sessions/{child}:merge", {"strategy": strategy}, **kw)


def test_clean_merge_into_parent_then_up_to_date(api: Api) -> None:
    parent, child = fork_pair(api)
    put(api, child, "a.txt", BASE.replace(b"line 1", b"LINE 1"))
    put(api, child, "new.txt", b"from child\n")
    put(api, parent, "a.txt", BASE.replace(b"line 5", b"LINE 5"))
    r = merge(api, child, expect=200).json()["merge"]
    assert r["status"] == "merged" and r["conflicts"] == []
    assert r["files"] == ["a.txt", "new.txt"]
    assert len(r["commit"]["parents"]) == 2
    assert read(api, parent, "a.txt") == BASE.replace(b"line 1", b"LINE 1").replace(
        b"line 5", b"LINE 5"
    )
    assert read(api, parent, "new.txt") == b"from child\n"
    assert read(api, child, "a.txt") == BASE.replace(b"line 1", b"LINE 1")  # source untouched
    again = merge(api, child, expect=200).json()["merge"]
    assert again == {"status": "up_to_date", "commit": None, "conflicts": [], "files": []}
    # a second merge brings only what is new: the parent's own edit is not re-applied
    put(api, parent, "b.txt", b"parent changed b\n")
    put(api, child, "new.txt", b"from child, v2\n")
    r2 = merge(api, child, expect=200).json()["merge"]
    assert r2["status"] == "merged" and r2["files"] == ["new.txt"]
    assert read(api, parent, "b.txt") == b"parent changed b\n"
    assert read(api, parent, "new.txt") == b"from child, v2\n"
    events = api.get(f"/v1/sessions/{parent}/events").json()["events"]
    merged = [e for e in events if e["type"] == "session.merged"]
    assert len(merged) == 2 and merged[0]["data"]["sourceSessionId"] == child


def _conflict(api: Api) -> tuple[str, str]:
    parent, child = fork_pair(api)
    put(api, child, "a.txt", BASE.replace(b"line 3", b"child 3"))
    put(api, parent, "a.txt", BASE.replace(b"line 3", b"parent 3"))
    put(api, child, "gone.txt", b"x\n")
    api.delete(f"/v1/sessions/{child}/files/b.txt", expect=204)
    put(api, parent, "b.txt", b"parent edited b\n")
    return parent, child


def test_fail_strategy_writes_nothing(api: Api) -> None:
    parent, child = _conflict(api)
    before = api.get(f"/v1/sessions/{parent}").json()["session"]["workspace"]
    commits = api.get(f"/v1/sessions/{parent}/commits").json()["commits"]
    r = merge(api, child, "fail", expect=409, code="merge_conflict")
    conflicts = r.json()["details"]["conflicts"]
    assert conflicts == [
        {"path": "a.txt", "kind": "content"},
        {"path": "b.txt", "kind": "delete/modify"},
    ]
    assert api.get(f"/v1/sessions/{parent}").json()["session"]["workspace"] == before
    assert api.get(f"/v1/sessions/{parent}/commits").json()["commits"] == commits
    assert read(api, parent, "a.txt") == BASE.replace(b"line 3", b"parent 3")


@pytest.mark.parametrize("strategy", ["ours", "theirs", "markers"])
def test_conflict_strategies(api: Api, strategy: str) -> None:
    parent, child = _conflict(api)
    r = merge(api, child, strategy, expect=200).json()["merge"]
    # ours/theirs resolve every conflict: merged; only markers leave conflicts to resolve.
    assert r["status"] == ("conflicts" if strategy == "markers" else "merged")
    assert {c["path"] for c in r["conflicts"]} == {"a.txt", "b.txt"}
    assert read(api, parent, "gone.txt") == b"x\n"  # the clean part merges in every case
    a = read(api, parent, "a.txt")
    if strategy == "ours":
        assert a == BASE.replace(b"line 3", b"parent 3")
        assert read(api, parent, "b.txt") == b"parent edited b\n"
    elif strategy == "theirs":
        assert a == BASE.replace(b"line 3", b"child 3")
        api.get(f"/v1/sessions/{parent}/files/b.txt", expect=404)
    else:
        assert a == (
            b"line 1\nline 2\n<<<<<<< ours\nparent 3\n=======\nchild 3\n"
            b">>>>>>> theirs\nline 4\nline 5\n"
        )
        assert read(api, parent, "b.txt") == b"parent edited b\n"


def test_merge_from_and_errors(client: Any, api: Api, tenant: Any, other: Any) -> None:
    parent, child = fork_pair(api)
    put(api, parent, "p.txt", b"p\n")
    r = api.post(
        f"/v1/sessions/{child}:mergeFrom",
        {"sourceSessionId": parent, "strategy": "fail"},
        expect=200,
    ).json()["merge"]
    assert r["status"] == "merged" and read(api, child, "p.txt") == b"p\n"
    lone = api.session()["id"]
    api.post(f"/v1/sessions/{lone}:merge", {}, expect=422, code="validation_error")
    api.post(f"/v1/sessions/{child}:merge", {"strategy": "yolo"}, expect=422)
    api.post(f"/v1/sessions/{child}:merge", {"targetSessionId": child}, expect=422)
    api.post(f"/v1/sessions/{child}:merge", {"targetSessionId": "ses_nope"}, expect=404)
    Api(client, tenant.read).post(f"/v1/sessions/{child}:merge", {}, expect=403)
    Api(client, other.admin).post(f"/v1/sessions/{child}:merge", {}, expect=404)
    theirs = Api(client, other.write).session()["id"]
    api.post(f"/v1/sessions/{child}:mergeFrom", {"sourceSessionId": theirs}, expect=404)
    api.post(f"/v1/sessions/{parent}/close", expect=200)
    put(api, child, "late.txt", b"l\n")
    api.post(f"/v1/sessions/{child}:merge", {}, expect=409, code="session_not_active")


def _written(api: Api, sid: str) -> tuple[Any, ...]:
    session = api.get(f"/v1/sessions/{sid}").json()["session"]
    commits = api.get(f"/v1/sessions/{sid}/commits").json()["commits"]
    events = api.get(f"/v1/sessions/{sid}/events", params={"limit": 200}).json()["events"]
    return session["workspace"], session["lifecycleVersion"], commits, len(events)


def test_a_fork_that_changed_nothing_is_up_to_date_both_ways(api: Api) -> None:
    parent = api.session()["id"]
    put(api, parent, "a.txt", b"a\n")
    child = api.post(f"/v1/sessions/{parent}/fork", expect=201).json()["session"]["id"]
    up_to_date = {"status": "up_to_date", "commit": None, "conflicts": [], "files": []}
    before = _written(api, parent), _written(api, child)
    assert merge(api, child, "fail", expect=200).json()["merge"] == up_to_date
    for target, source in ((parent, child), (child, parent)):
        r = api.post(
            f"/v1/sessions/{target}:mergeFrom",
            {"sourceSessionId": source, "strategy": "fail"},
            expect=200,
        )
        assert r.json()["merge"] == up_to_date
    assert (_written(api, parent), _written(api, child)) == before
    # Once the fork changes something, it merges.
    put(api, child, "b.txt", b"b\n")
    r = merge(api, child, "fail", expect=200).json()["merge"]
    assert r["status"] == "merged" and r["files"] == ["b.txt"]
    assert merge(api, child, "fail", expect=200).json()["merge"] == up_to_date
