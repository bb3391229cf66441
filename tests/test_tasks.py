"""Tasks over HTTP: the session's ordered todo list (GET, PUT, POST, PATCH, DELETE)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.ids import new_id
from sessiond.tasks import service as tasks_service
from tests.support.api import Api, Tenant
from tests.support.clock import Clock
from tests.support.purge import purge

FIELDS = {"id", "sessionId", "content", "status", "priority", "position", "createdAt", "updatedAt"}


def url(sid: str, task_id: str | None = None) -> str:
    base = f"/v1/sessions/{sid}/tasks"
    return base if task_id is None else f"{base}/{task_id}"


def listed(api: Api, sid: str) -> list[dict[str, Any]]:
    body = api.get(url(sid), expect=200).json()
    assert body["nextCursor"] is None
    return body["tasks"]  # type: ignore[no-any-return]


def contents(api: Api, sid: str) -> list[str]:
    items = listed(api, sid)
    assert [x["position"] for x in items] == list(range(len(items)))
    return [x["content"] for x in items]


def add(api: Api, sid: str, content: str, **kw: Any) -> dict[str, Any]:
    return api.post(url(sid), {"content": content, **kw}, expect=201).json()["task"]  # type: ignore[no-any-return]


def task_events(api: Api, sid: str) -> list[dict[str, Any]]:
    events = api.get(f"/v1/sessions/{sid}/events", params={"limit": 200}, expect=200).json()
    return [e for e in events["events"] if e["type"].startswith("task.")]


def fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json()["details"]["errors"]]


# -- happy paths ---------------------------------------------------------------------------


def test_task_object_and_defaults(api: Api) -> None:
    sid = api.session()["id"]
    assert listed(api, sid) == []
    task = add(api, sid, "write the parser")
    assert set(task) == FIELDS
    assert task["id"].startswith("tsk_") and len(task["id"]) == 30
    assert task["sessionId"] == sid and task["content"] == "write the parser"
    assert task["status"] == "pending" and task["priority"] == "medium"
    assert task["position"] == 0
    assert task["createdAt"].endswith("Z") and len(task["createdAt"]) == 24
    assert task["updatedAt"] == task["createdAt"]
    other = add(api, sid, "test it", status="in_progress", priority="high")
    assert other["status"] == "in_progress" and other["priority"] == "high"
    assert other["position"] == 1
    assert listed(api, sid) == [task, other]
    assert api.get(url(sid, task["id"]), expect=200).json() == {"task": task}
    session = api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]
    assert session["lastActivityAt"] == other["createdAt"]


def test_post_inserts_at_position(api: Api) -> None:
    sid = api.session()["id"]
    for c in ("a", "b", "c"):
        add(api, sid, c)
    assert add(api, sid, "x", position=0)["position"] == 0
    assert contents(api, sid) == ["x", "a", "b", "c"]
    assert add(api, sid, "y", position=2)["position"] == 2
    assert contents(api, sid) == ["x", "a", "y", "b", "c"]
    assert add(api, sid, "z", position=5)["position"] == 5  # == length: appended
    assert contents(api, sid) == ["x", "a", "y", "b", "c", "z"]


def test_patch_changes_fields_and_moves(api: Api) -> None:
    sid = api.session()["id"]
    a, b, c, d = (add(api, sid, x) for x in "abcd")
    got = api.patch(url(sid, b["id"]), {"status": "completed"}, expect=200).json()["task"]
    assert got["status"] == "completed" and got["content"] == "b" and got["position"] == 1
    assert got["createdAt"] == b["createdAt"] and got["updatedAt"] >= b["updatedAt"]
    got = api.patch(url(sid, a["id"]), {"position": 3, "priority": "low"}, expect=200).json()
    assert got["task"]["position"] == 3 and got["task"]["priority"] == "low"
    assert contents(api, sid) == ["b", "c", "d", "a"]
    api.patch(url(sid, d["id"]), {"position": 0, "content": "D"}, expect=200)
    assert contents(api, sid) == ["D", "b", "c", "a"]
    api.patch(url(sid, c["id"]), {"position": 2}, expect=200)  # where it is: no move
    assert contents(api, sid) == ["D", "b", "c", "a"]
    snake = api.patch(url(sid, c["id"]), {"status": "in_progress"}, expect=200).json()["task"]
    assert snake["status"] == "in_progress"
    before = task_events(api, sid)
    same = api.patch(url(sid, c["id"]), {}, expect=200).json()["task"]
    assert same == snake
    api.patch(url(sid, c["id"]), {"status": "in_progress", "position": 2}, expect=200)
    assert task_events(api, sid) == before  # nothing changed: no event


def test_delete_keeps_positions_dense(api: Api) -> None:
    sid = api.session()["id"]
    _a, b, _c, d = (add(api, sid, x) for x in "abcd")
    r = api.delete(url(sid, b["id"]), expect=204)
    assert r.content == b""
    assert contents(api, sid) == ["a", "c", "d"]
    api.delete(url(sid, b["id"]), expect=404, code="not_found")
    api.get(url(sid, b["id"]), expect=404, code="not_found")
    api.patch(url(sid, b["id"]), {"status": "completed"}, expect=404, code="not_found")
    api.delete(url(sid, d["id"]), expect=204)
    assert contents(api, sid) == ["a", "c"]
    assert add(api, sid, "e")["position"] == 2


def test_put_replaces_the_list(api: Api) -> None:
    sid = api.session()["id"]
    a = add(api, sid, "a", status="completed", priority="high")
    b = add(api, sid, "b")
    add(api, sid, "c")
    body = {
        "tasks": [
            {"content": "new first", "status": "in_progress"},
            {"id": b["id"], "content": "b", "status": "pending", "priority": "medium"},
            {"id": a["id"], "content": "a renamed", "status": "completed", "priority": "high"},
            {"content": "new last", "priority": "low"},
        ]
    }
    out = api.put(url(sid), body, expect=200).json()
    assert out["nextCursor"] is None
    got = out["tasks"]
    assert [x["content"] for x in got] == ["new first", "b", "a renamed", "new last"]
    assert [x["position"] for x in got] == [0, 1, 2, 3]
    assert got[1] == {**b, "position": 1}  # unchanged: same id, createdAt and updatedAt
    assert got[2]["id"] == a["id"] and got[2]["createdAt"] == a["createdAt"]
    assert got[0]["status"] == "in_progress" and got[0]["priority"] == "medium"
    assert got[3]["status"] == "pending" and got[3]["priority"] == "low"
    assert got[0]["id"].startswith("tsk_") and got[0]["id"] not in (a["id"], b["id"])
    assert listed(api, sid) == got
    # Omitted status and priority take the defaults, even for an existing task.
    again = api.put(url(sid), {"tasks": [{"id": a["id"], "content": "a renamed"}]}, expect=200)
    assert again.json()["tasks"][0]["status"] == "pending"
    assert again.json()["tasks"][0]["priority"] == "medium"
    assert api.put(url(sid), {"tasks": []}, expect=200).json()["tasks"] == []
    assert listed(api, sid) == []


def test_put_snake_case_and_identical_list(api: Api) -> None:
    sid = api.session()["id"]
    a = add(api, sid, "a")
    b = add(api, sid, "b")
    same = {"tasks": [{"id": x["id"], "content": x["content"]} for x in (a, b)]}
    before = task_events(api, sid)
    assert api.put(url(sid), same, expect=200).json()["tasks"] == [a, b]
    assert task_events(api, sid) == before
    swap = {"tasks": [same["tasks"][1], same["tasks"][0]]}
    got = api.put(url(sid), swap, expect=200).json()["tasks"]
    assert [x["id"] for x in got] == [b["id"], a["id"]]
    assert len(task_events(api, sid)) == len(before) + 1


def test_events_one_per_change(api: Api) -> None:
    sid = api.session()["id"]
    a = add(api, sid, "a")
    b = add(api, sid, "b", position=0)
    api.patch(url(sid, a["id"]), {"status": "completed"}, expect=200)
    api.delete(url(sid, b["id"]), expect=204)
    final = api.put(url(sid), {"tasks": [{"content": "x"}, {"content": "y"}]}, expect=200)
    events = task_events(api, sid)
    assert [e["type"] for e in events] == ["task.updated"] * 5
    assert [e["data"]["change"] for e in events] == [
        "created",
        "created",
        "updated",
        "deleted",
        "replaced",
    ]
    assert [e["data"]["taskId"] for e in events] == [a["id"], b["id"], a["id"], b["id"], None]
    assert [x["content"] for x in events[1]["data"]["tasks"]] == ["b", "a"]
    assert events[2]["data"]["tasks"][1]["status"] == "completed"
    assert [x["content"] for x in events[3]["data"]["tasks"]] == ["a"]
    assert events[4]["data"]["tasks"] == final.json()["tasks"]
    assert all(e["sessionId"] == sid and e["workspaceId"] == "default" for e in events)


def test_list_for_session_for_internal_callers(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    add(api, sid, "one")
    add(api, sid, "zero", position=0)
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    got = db.read_sync(tasks_service.list_for_session, sid)
    assert got == listed(api, sid)
    assert db.read_sync(tasks_service.list_for_session, "ses_nope") == []


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "x", "status": "done"}, "status"),
        ({"content": "x", "priority": "urgent"}, "priority"),
        ({"content": ""}, "content"),
        ({"content": "x" * 10_001}, "content"),
        ({"content": 5}, "content"),
        ({"content": None}, "content"),
        ({}, "content"),
        ({"content": "x", "colour": "red"}, "colour"),
        ({"content": "x", "position": -1}, "position"),
        ({"content": "x", "position": 3}, "position"),
        ({"content": "x", "position": "1"}, "position"),
        ({"content": "x", "position": 1.5}, "position"),
        ({"content": "x", "id": "tsk_mine"}, "id"),
    ],
)
def test_bad_post_bodies(api: Api, body: Any, field: str) -> None:
    sid = api.session()["id"]
    add(api, sid, "a")
    add(api, sid, "b")
    r = api.post(url(sid), body, expect=422, code="validation_error")
    assert field in fields(r)
    assert contents(api, sid) == ["a", "b"]
    assert len(task_events(api, sid)) == 2


def test_content_limit_is_inclusive(api: Api) -> None:
    sid = api.session()["id"]
    assert len(add(api, sid, "x" * 10_000)["content"]) == 10_000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": None}, "content"),
        ({"status": None}, "status"),
        ({"priority": None}, "priority"),
        ({"position": None}, "position"),
        ({"content": ""}, "content"),
        ({"status": "waiting"}, "status"),
        ({"priority": 1}, "priority"),
        ({"position": 2}, "position"),
        ({"position": -1}, "position"),
        ({"id": "tsk_x"}, "id"),
        ({"sessionId": "ses_x"}, "sessionId"),
    ],
)
def test_bad_patch_bodies(api: Api, body: Any, field: str) -> None:
    sid = api.session()["id"]
    a = add(api, sid, "a")
    add(api, sid, "b")
    r = api.patch(url(sid, a["id"]), body, expect=422, code="validation_error")
    assert field in fields(r)
    assert api.get(url(sid, a["id"]), expect=200).json()["task"] == a
    assert len(task_events(api, sid)) == 2


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([{"content": "ok"}, {"content": "x", "status": "done"}], "tasks[1].status"),
        ([{"content": "ok"}, {"content": ""}], "tasks[1].content"),
        ([{"content": "x", "position": 0}], "tasks[0].position"),
        ([{"status": "pending"}], "tasks[0].content"),
        (
            [{"content": "ok"}, {"content": "x", "id": "tsk_01JD0000000000000000000000"}],
            "tasks[1].id",
        ),
        ([{"content": "x", "id": "FIRST"}, {"content": "y", "id": "FIRST"}], "tasks[1].id"),
        (["just text"], "tasks[0]"),
        ("not a list", "tasks"),
        (None, "tasks"),
        ([{"content": "x"}] * 501, "tasks"),
    ],
)
def test_bad_put_bodies(api: Api, items: Any, field: str) -> None:
    sid = api.session()["id"]
    first = add(api, sid, "first")
    if isinstance(items, list):
        items = [
            {**x, "id": first["id"]} if isinstance(x, dict) and x.get("id") == "FIRST" else x
            for x in items
        ]
    r = api.put(url(sid), {"tasks": items}, expect=422, code="validation_error")
    assert field in fields(r)
    assert listed(api, sid) == [first]
    assert len(task_events(api, sid)) == 1


def test_put_body_shape(api: Api) -> None:
    sid = api.session()["id"]
    assert fields(api.put(url(sid), {}, expect=422, code="validation_error")) == ["tasks"]
    r = api.put(url(sid), {"tasks": [], "extra": 1}, expect=422, code="validation_error")
    assert fields(r) == ["extra"]
    api.put(url(sid), [], expect=422, code="validation_error")
    r = api.request("PUT", url(sid), content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"


def test_at_most_500_tasks(api: Api) -> None:
    sid = api.session()["id"]
    full = {"tasks": [{"content": f"t{i}"} for i in range(500)]}
    got = api.put(url(sid), full, expect=200).json()["tasks"]
    assert len(got) == 500 and got[-1]["position"] == 499
    r = api.post(url(sid), {"content": "one more"}, expect=422, code="validation_error")
    assert fields(r) == ["tasks"]
    assert len(listed(api, sid)) == 500
    api.delete(url(sid, got[0]["id"]), expect=204)
    assert add(api, sid, "fits again")["position"] == 499


# -- session state, roles, accounts --------------------------------------------------------


@pytest.mark.parametrize("state", ["closed", "archived", "expired", "completed"])
def test_writes_need_an_active_session(api: Api, clock: Clock, state: str) -> None:
    s = api.session(ttl_seconds=3600)
    sid = s["id"]
    a = add(api, sid, "a")
    if state == "closed":
        api.post(f"/v1/sessions/{sid}/close", expect=200)
    elif state == "expired":
        clock.advance(3600)
    else:
        api.patch(f"/v1/sessions/{sid}", {"status": state}, expect=200)
    before = task_events(api, sid)
    api.post(url(sid), {"content": "b"}, expect=409, code="session_not_active")
    api.put(url(sid), {"tasks": []}, expect=409, code="session_not_active")
    api.patch(url(sid, a["id"]), {"status": "completed"}, expect=409, code="session_not_active")
    api.delete(url(sid, a["id"]), expect=409, code="session_not_active")
    assert listed(api, sid) == [a]
    assert api.get(url(sid, a["id"]), expect=200).json()["task"] == a
    assert task_events(api, sid) == before


def test_read_key_reads_but_cannot_write(client: TestClient, api: Api, tenant: Tenant) -> None:
    reader = Api(client, tenant.read)
    sid = api.session()["id"]
    a = add(api, sid, "a")
    assert reader.get(url(sid), expect=200).json()["tasks"] == [a]
    assert reader.get(url(sid, a["id"]), expect=200).json()["task"] == a
    reader.post(url(sid), {"content": "b"}, expect=403, code="forbidden")
    reader.put(url(sid), {"tasks": []}, expect=403, code="forbidden")
    reader.patch(url(sid, a["id"]), {"content": "b"}, expect=403, code="forbidden")
    reader.delete(url(sid, a["id"]), expect=403, code="forbidden")
    assert listed(api, sid) == [a]


def test_if_match_is_checked(api: Api) -> None:
    s = api.session()
    sid, version = s["id"], s["lifecycleVersion"]
    a = add(api, sid, "a")
    stale = {"If-Match": f'"{version + 5}"'}
    api.post(url(sid), {"content": "b"}, headers=stale, expect=412, code="precondition_failed")
    api.patch(url(sid, a["id"]), {"content": "b"}, headers=stale, expect=412)
    api.delete(url(sid, a["id"]), headers=stale, expect=412)
    api.put(url(sid), {"tasks": []}, headers=stale, expect=412)
    ok = {"If-Match": f'"{version}"'}
    api.patch(url(sid, a["id"]), {"content": "b"}, headers=ok, expect=200)
    assert contents(api, sid) == ["b"]


def test_other_account_sees_nothing(client: TestClient, api: Api, other: Tenant) -> None:
    intruder = Api(client, other.admin)
    sid = api.session()["id"]
    a = add(api, sid, "mine")
    fake_sid, fake_tid = new_id("ses"), new_id("tsk")
    theirs = intruder.session()["id"]
    routes: list[tuple[str, str | None, Any]] = [
        ("GET", None, None),
        ("PUT", None, {"tasks": [{"content": "taken"}]}),
        ("POST", None, {"content": "taken"}),
        ("GET", a["id"], None),
        ("PATCH", a["id"], {"content": "taken"}),
        ("DELETE", a["id"], None),
    ]
    for method, tid, body in routes:
        # Their session through another account: exactly like a session that never existed.
        r1 = intruder.request(method, url(sid, tid), json=body)
        r2 = intruder.request(method, url(fake_sid, tid), json=body)
        assert r1.status_code == 404 == r2.status_code, (method, r1.text)
        assert r1.json()["code"] == "not_found"
        assert r1.json()["error"].replace(sid, "<id>") == r2.json()["error"].replace(
            fake_sid, "<id>"
        )
        if tid is not None:
            # Their task through the intruder's own session: like a task that never existed.
            r1 = intruder.request(method, url(theirs, tid), json=body)
            r2 = intruder.request(method, url(theirs, fake_tid), json=body)
            assert r1.status_code == 404 == r2.status_code, (method, r1.text)
            assert r1.json()["error"].replace(tid, "<id>") == r2.json()["error"].replace(
                fake_tid, "<id>"
            )
    assert listed(api, sid) == [a]
    assert listed(intruder, theirs) == []
    assert [e["data"]["change"] for e in task_events(api, sid)] == ["created"]


def test_task_of_another_session_is_404(api: Api) -> None:
    one = api.session()["id"]
    two = api.session()["id"]
    a = add(api, one, "a")
    api.get(url(two, a["id"]), expect=404, code="not_found")
    api.patch(url(two, a["id"]), {"content": "moved"}, expect=404, code="not_found")
    api.delete(url(two, a["id"]), expect=404, code="not_found")
    r = api.put(url(two), {"tasks": [{"id": a["id"], "content": "stolen"}]}, expect=422)
    assert fields(r) == ["tasks[0].id"]
    assert listed(api, one) == [a] and listed(api, two) == []
    api.get(url("ses_nope"), expect=404, code="not_found")
    api.post(url("ses_nope"), {"content": "x"}, expect=404, code="not_found")


def test_idempotent_post(api: Api) -> None:
    sid = api.session()["id"]
    h = {"Idempotency-Key": "task-1"}
    first = api.post(url(sid), {"content": "once"}, headers=h, expect=201)
    again = api.post(url(sid), {"content": "once"}, headers=h, expect=201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    api.post(url(sid), {"content": "other"}, headers=h, expect=422, code="idempotency_mismatch")
    assert contents(api, sid) == ["once"]
    assert len(task_events(api, sid)) == 1


def test_deleting_the_session_deletes_its_tasks(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    keep = api.session()["id"]
    add(api, sid, "a")
    add(api, sid, "b")
    k = add(api, keep, "kept")
    api.delete(f"/v1/sessions/{sid}", expect=204)
    api.get(url(sid), expect=404, code="not_found")

    def count(tx: Tx) -> int:
        q = sa.select(sa.func.count()).select_from(t.tasks).where(t.tasks.c.session_id == sid)
        return int(tx.conn.execute(q).scalar_one())

    purge(client)  # rows go in the background (docs/design/deletion.md)
    assert client.app.state.ctx.db.read_sync(count) == 0  # type: ignore[attr-defined]
    assert listed(api, keep) == [k]
