"""Annotations over HTTP: review notes on a file line range or on a message."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.ids import new_id
from tests.support.api import Api, Tenant
from tests.support.clock import Clock
from tests.support.purge import purge

FIELDS = {"id", "sessionId", "target", "body", "status", "createdAt", "updatedAt"}
FILE = {"path": "src/app.py", "startLine": 3, "endLine": 7}


def url(sid: str, annotation_id: str | None = None) -> str:
    base = f"/v1/sessions/{sid}/annotations"
    return base if annotation_id is None else f"{base}/{annotation_id}"


def add(
    api: Api, sid: str, target: Any = None, body: str = "look here", **kw: Any
) -> dict[str, Any]:
    payload = {"target": FILE if target is None else target, "body": body, **kw}
    return api.post(url(sid), payload, expect=201).json()["annotation"]  # type: ignore[no-any-return]


def message(api: Api, sid: str, text: str = "hello") -> str:
    body = {"role": "user", "content": text}
    return str(api.post(f"/v1/sessions/{sid}/messages", body, expect=201).json()["message"]["id"])


def listed(api: Api, sid: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        body = api.get(url(sid), params=q, expect=200).json()
        out.extend(body["annotations"])
        cursor = body["nextCursor"]
        if cursor is None:
            return out


def ann_events(api: Api, sid: str) -> list[dict[str, Any]]:
    events = api.get(f"/v1/sessions/{sid}/events", params={"limit": 200}, expect=200).json()
    return [e for e in events["events"] if e["type"].startswith("annotation.")]


def fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json()["details"]["errors"]]


# -- happy paths ---------------------------------------------------------------------------


def test_file_and_message_targets(api: Api) -> None:
    sid = api.session()["id"]
    ann = add(api, sid)
    assert set(ann) == FIELDS
    assert ann["id"].startswith("ann_") and len(ann["id"]) == 30
    assert ann["sessionId"] == sid and ann["body"] == "look here" and ann["status"] == "open"
    assert ann["target"] == {**FILE, "checkpointId": None}
    assert ann["createdAt"].endswith("Z") and ann["updatedAt"] == ann["createdAt"]
    checkpoint = api.post(f"/v1/sessions/{sid}/checkpoints", {}, expect=201).json()
    cp_id = checkpoint["checkpoint"]["id"]
    pinned = add(
        api,
        sid,
        {"path": "a.md", "start_line": 1, "end_line": 1, "checkpoint_id": cp_id},
        status="resolved",
    )
    assert pinned["target"] == {
        "path": "a.md",
        "startLine": 1,
        "endLine": 1,
        "checkpointId": cp_id,
    }
    assert pinned["status"] == "resolved"
    mid = message(api, sid)
    on_message = add(api, sid, {"messageId": mid}, "wrong claim")
    assert on_message["target"] == {"messageId": mid}
    session = api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]
    assert session["lastActivityAt"] == on_message["createdAt"]
    assert add(api, sid, {"message_id": mid})["target"] == {"messageId": mid}
    got = api.get(url(sid, on_message["id"]), expect=200).json()
    assert got == {"annotation": on_message}
    assert [x["id"] for x in listed(api, sid)][:3] == [ann["id"], pinned["id"], on_message["id"]]


def test_patch_and_delete(api: Api) -> None:
    sid = api.session()["id"]
    ann = add(api, sid)
    r = api.patch(url(sid, ann["id"]), {"status": "resolved"}, expect=200)
    resolved = r.json()["annotation"]
    assert resolved["status"] == "resolved" and resolved["body"] == ann["body"]
    assert resolved["createdAt"] == ann["createdAt"]
    reopened = api.patch(url(sid, ann["id"]), {"status": "open"}, expect=200).json()["annotation"]
    assert reopened["status"] == "open"
    mid = message(api, sid)
    moved = api.patch(
        url(sid, ann["id"]), {"target": {"messageId": mid}, "body": "now here"}, expect=200
    ).json()["annotation"]
    assert moved["target"] == {"messageId": mid} and moved["body"] == "now here"
    assert api.patch(url(sid, ann["id"]), {}, expect=200).json()["annotation"] == moved
    same = {"target": {"messageId": mid}, "status": "open"}
    assert api.patch(url(sid, ann["id"]), same, expect=200).json()["annotation"] == moved
    dismissed = api.patch(url(sid, ann["id"]), {"status": "dismissed"}, expect=200).json()
    assert api.get(url(sid, ann["id"]), expect=200).json() == dismissed
    api.delete(url(sid, ann["id"]), expect=204)
    api.get(url(sid, ann["id"]), expect=404, code="not_found")
    api.patch(url(sid, ann["id"]), {"body": "x"}, expect=404, code="not_found")
    api.delete(url(sid, ann["id"]), expect=404, code="not_found")
    assert listed(api, sid) == []
    events = ann_events(api, sid)
    assert [e["type"] for e in events] == [
        "annotation.created",
        "annotation.updated",
        "annotation.updated",
        "annotation.updated",
        "annotation.updated",
        "annotation.deleted",
    ]
    assert events[0]["data"] == {"annotation": ann}
    assert events[1]["data"] == {"annotation": resolved}
    assert events[3]["data"] == {"annotation": moved}
    assert events[4]["data"] == dismissed
    assert events[5]["data"] == {"id": ann["id"]}
    assert all(e["sessionId"] == sid and e["workspaceId"] == "default" for e in events)


def test_list_filter_and_pagination(api: Api) -> None:
    sid = api.session()["id"]
    made = [
        add(api, sid, body=f"n{i}", status="resolved" if i % 3 == 0 else "open") for i in range(8)
    ]
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get(url(sid), params=params, expect=200).json()
        assert len(page["annotations"]) <= 3
        ids += [x["id"] for x in page["annotations"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert ids == sorted(x["id"] for x in made)
    resolved = [x for x in made if x["status"] == "resolved"]
    assert listed(api, sid, status="resolved") == sorted(resolved, key=lambda x: x["id"])
    assert [x["id"] for x in listed(api, sid, status="resolved", limit=1)] == sorted(
        x["id"] for x in resolved
    )
    assert len(listed(api, sid, status="open")) == 5
    assert len(listed(api, sid, status="open,resolved")) == 8
    assert listed(api, sid, status="dismissed") == []
    r = api.get(url(sid), params={"status": "closed"}, expect=422, code="validation_error")
    assert fields(r) == ["status"]
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
    ):
        r = api.get(url(sid), params=params, expect=422, code="validation_error")
        assert fields(r) == [field]


# -- bad input -----------------------------------------------------------------------------

BAD_PATHS = [
    "../x",
    "/abs",
    "/etc/passwd",
    "a/../../b",
    "a/..",
    "a\x00b",
    ".git/config",
    ".git",
    "src/.git/config",
    ".GIT/config",
    "",
    "a\\b",
    "a//b",
    "./a",
    "a/",
    "x" * 4097,
    "d/" + "n" * 256,
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=[repr(p)[:30] for p in BAD_PATHS])
def test_bad_paths_are_invalid_path(api: Api, path: str) -> None:
    sid = api.session()["id"]
    ann = add(api, sid)
    target = {"path": path, "startLine": 1, "endLine": 2}
    r = api.post(url(sid), {"target": target, "body": "x"}, expect=422, code="invalid_path")
    assert fields(r) == ["target.path"]
    r = api.patch(url(sid, ann["id"]), {"target": target}, expect=422, code="invalid_path")
    assert fields(r) == ["target.path"]
    assert listed(api, sid) == [ann]
    assert len(ann_events(api, sid)) == 1


def test_long_paths_within_limits(api: Api) -> None:
    sid = api.session()["id"]
    path = "/".join(["d" * 255] * 16)  # 4,095 bytes
    assert add(api, sid, {"path": path, "startLine": 1, "endLine": 1})["target"]["path"] == path


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"path": "a", "startLine": 0, "endLine": 1}, "target.startLine"),
        ({"path": "a", "startLine": 5, "endLine": 4}, "target.endLine"),
        ({"path": "a", "startLine": -1, "endLine": 4}, "target.startLine"),
        ({"path": "a", "startLine": "1", "endLine": 4}, "target.startLine"),
        ({"path": "a", "startLine": True, "endLine": 4}, "target.startLine"),
        ({"path": "a", "startLine": 1.5, "endLine": 4}, "target.startLine"),
        ({"path": "a", "startLine": 1}, "target.endLine"),
        ({"path": "a", "endLine": 1}, "target.startLine"),
        ({"startLine": 1, "endLine": 1}, "target.path"),
        ({"path": 7, "startLine": 1, "endLine": 1}, "target.path"),
        ({"path": None, "startLine": 1, "endLine": 1}, "target.path"),
        (
            {"path": "a", "startLine": 1, "endLine": 1, "checkpointId": "cp_1"},
            "target.checkpointId",
        ),
        ({"path": "a", "startLine": 1, "endLine": 1, "checkpointId": 5}, "target.checkpointId"),
        (
            {"path": "a", "startLine": 1, "endLine": 1, "checkpointId": "ses_" + "0" * 26},
            "target.checkpointId",
        ),
        ({"path": "a", "startLine": 1, "endLine": 1, "line": 3}, "target.line"),
        ({"path": "a", "startLine": 1, "endLine": 1, "start_line": 1}, "target.startLine"),
        ({"path": "a", "startLine": 1, "endLine": 1, "messageId": "msg_x"}, "target"),
        ({"messageId": 5}, "target.messageId"),
        ({"messageId": ""}, "target.messageId"),
        ({"messageId": "msg_01JD0000000000000000000000"}, "target.messageId"),
        ({}, "target"),
        ("src/app.py", "target"),
        ([FILE], "target"),
        (None, "target"),
    ],
)
def test_bad_targets(api: Api, target: Any, field: str) -> None:
    sid = api.session()["id"]
    ann = add(api, sid)
    r = api.post(url(sid), {"target": target, "body": "x"}, expect=422, code="validation_error")
    assert field in fields(r), r.json()
    r = api.patch(url(sid, ann["id"]), {"target": target}, expect=422, code="validation_error")
    assert field in fields(r), r.json()
    assert listed(api, sid) == [ann]
    assert len(ann_events(api, sid)) == 1


def test_message_must_be_on_this_conversation(api: Api) -> None:
    sid = api.session()["id"]
    other = api.session()["id"]
    theirs = message(api, other)
    gone = message(api, sid, "to delete")
    api.delete(f"/v1/sessions/{sid}/messages/{gone}", expect=204)
    for mid in (theirs, gone, "nonsense"):
        body = {"target": {"messageId": mid}, "body": "x"}
        r = api.post(url(sid), body, expect=422, code="validation_error")
        assert fields(r) == ["target.messageId"]
    assert listed(api, sid) == []
    assert ann_events(api, sid) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": FILE}, "body"),
        ({"target": FILE, "body": ""}, "body"),
        ({"target": FILE, "body": None}, "body"),
        ({"target": FILE, "body": 3}, "body"),
        ({"target": FILE, "body": "x" * (1024 * 1024 + 1)}, "body"),
        ({"body": "x"}, "target"),
        ({"target": FILE, "body": "x", "status": "closed"}, "status"),
        ({"target": FILE, "body": "x", "severity": "high"}, "severity"),
        ({"target": FILE, "body": "x", "id": "ann_x"}, "id"),
    ],
)
def test_bad_create_bodies(api: Api, body: Any, field: str) -> None:
    sid = api.session()["id"]
    r = api.post(url(sid), body, expect=422, code="validation_error")
    assert field in fields(r)
    assert listed(api, sid) == []
    assert ann_events(api, sid) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": None}, "body"),
        ({"body": ""}, "body"),
        ({"status": None}, "status"),
        ({"status": "closed"}, "status"),
        ({"target": None}, "target"),
        ({"sessionId": "ses_x"}, "sessionId"),
    ],
)
def test_bad_patch_bodies(api: Api, body: Any, field: str) -> None:
    sid = api.session()["id"]
    ann = add(api, sid)
    r = api.patch(url(sid, ann["id"]), body, expect=422, code="validation_error")
    assert field in fields(r)
    assert api.get(url(sid, ann["id"]), expect=200).json()["annotation"] == ann
    assert len(ann_events(api, sid)) == 1


# -- session state, roles, accounts --------------------------------------------------------


@pytest.mark.parametrize("state", ["closed", "archived", "expired", "completed"])
def test_writes_need_an_active_session(api: Api, clock: Clock, state: str) -> None:
    sid = api.session(ttl_seconds=3600)["id"]
    ann = add(api, sid)
    if state == "closed":
        api.post(f"/v1/sessions/{sid}/close", expect=200)
    elif state == "expired":
        clock.advance(3600)
    else:
        api.patch(f"/v1/sessions/{sid}", {"status": state}, expect=200)
    api.post(url(sid), {"target": FILE, "body": "x"}, expect=409, code="session_not_active")
    api.patch(url(sid, ann["id"]), {"status": "resolved"}, expect=409, code="session_not_active")
    api.delete(url(sid, ann["id"]), expect=409, code="session_not_active")
    assert listed(api, sid) == [ann]
    assert api.get(url(sid, ann["id"]), expect=200).json()["annotation"] == ann
    assert len(ann_events(api, sid)) == 1


def test_read_key_reads_but_cannot_write(client: TestClient, api: Api, tenant: Tenant) -> None:
    reader = Api(client, tenant.read)
    sid = api.session()["id"]
    ann = add(api, sid)
    assert listed(reader, sid) == [ann]
    assert reader.get(url(sid, ann["id"]), expect=200).json()["annotation"] == ann
    reader.post(url(sid), {"target": FILE, "body": "x"}, expect=403, code="forbidden")
    reader.patch(url(sid, ann["id"]), {"status": "resolved"}, expect=403, code="forbidden")
    reader.delete(url(sid, ann["id"]), expect=403, code="forbidden")
    assert listed(api, sid) == [ann]


def test_other_account_sees_nothing(client: TestClient, api: Api, other: Tenant) -> None:
    intruder = Api(client, other.admin)
    sid = api.session()["id"]
    mid = message(api, sid)
    ann = add(api, sid, {"messageId": mid})
    fake_sid, fake_aid = new_id("ses"), new_id("ann")
    theirs = intruder.session()["id"]
    routes: list[tuple[str, str | None, Any]] = [
        ("GET", None, None),
        ("POST", None, {"target": FILE, "body": "taken"}),
        ("GET", ann["id"], None),
        ("PATCH", ann["id"], {"status": "dismissed"}),
        ("DELETE", ann["id"], None),
    ]
    for method, aid, body in routes:
        r1 = intruder.request(method, url(sid, aid), json=body)
        r2 = intruder.request(method, url(fake_sid, aid), json=body)
        assert r1.status_code == 404 == r2.status_code, (method, r1.text)
        assert r1.json()["code"] == "not_found"
        assert r1.json()["error"].replace(sid, "<id>") == r2.json()["error"].replace(
            fake_sid, "<id>"
        )
        if aid is not None:
            r1 = intruder.request(method, url(theirs, aid), json=body)
            r2 = intruder.request(method, url(theirs, fake_aid), json=body)
            assert r1.status_code == 404 == r2.status_code, (method, r1.text)
            assert r1.json()["error"].replace(aid, "<id>") == r2.json()["error"].replace(
                fake_aid, "<id>"
            )
    # Their message is not a message of the intruder's conversation.
    r = intruder.post(url(theirs), {"target": {"messageId": mid}, "body": "x"}, expect=422)
    assert fields(r) == ["target.messageId"]
    assert listed(intruder, theirs) == []
    assert listed(api, sid) == [ann]
    assert [e["type"] for e in ann_events(api, sid)] == ["annotation.created"]


def test_annotation_of_another_session_is_404(api: Api) -> None:
    one = api.session()["id"]
    two = api.session()["id"]
    ann = add(api, one)
    api.get(url(two, ann["id"]), expect=404, code="not_found")
    api.patch(url(two, ann["id"]), {"body": "moved"}, expect=404, code="not_found")
    api.delete(url(two, ann["id"]), expect=404, code="not_found")
    assert listed(api, one) == [ann] and listed(api, two) == []
    api.get(url("ses_nope"), expect=404, code="not_found")
    api.post(url("ses_nope"), {"target": FILE, "body": "x"}, expect=404, code="not_found")


def test_idempotent_post(api: Api) -> None:
    sid = api.session()["id"]
    h = {"Idempotency-Key": "ann-1"}
    body = {"target": FILE, "body": "once"}
    first = api.post(url(sid), body, headers=h, expect=201)
    again = api.post(url(sid), body, headers=h, expect=201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    api.post(url(sid), {**body, "body": "two"}, headers=h, expect=422, code="idempotency_mismatch")
    assert [x["body"] for x in listed(api, sid)] == ["once"]
    assert len(ann_events(api, sid)) == 1


def test_deleting_the_session_deletes_its_annotations(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    keep = api.session()["id"]
    add(api, sid)
    add(api, sid, {"messageId": message(api, sid)})
    kept = add(api, keep)
    api.delete(f"/v1/sessions/{sid}", expect=204)
    api.get(url(sid), expect=404, code="not_found")

    def count(tx: Tx) -> int:
        a = t.annotations_table
        q = sa.select(sa.func.count()).select_from(a).where(a.c.session_id == sid)
        return int(tx.conn.execute(q).scalar_one())

    purge(client)  # rows go in the background (docs/design/deletion.md)
    assert client.app.state.ctx.db.read_sync(count) == 0  # type: ignore[attr-defined]
    assert listed(api, keep) == [kept]
