"""Checkpoints, restore, revert/unrevert and fork over HTTP: round trips that compare file
bytes and message lists, isolation of forks, and row counts proving nothing is copied."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from tests.support.api import Api


def put(api: Api, sid: str, path: str, data: bytes) -> None:
    api.put(f"/v1/sessions/{sid}/files/{path}", content=data, expect=200)


def files(api: Api, sid: str, at: str | None = None) -> dict[str, bytes]:
    params: dict[str, Any] = {"recursive": "true"}
    if at:
        params["at"] = at
    entries = api.get(f"/v1/sessions/{sid}/files", params=params, expect=200).json()["entries"]
    out = {}
    for e in entries:
        if at is None:
            out[e["path"]] = api.get(f"/v1/sessions/{sid}/files/{e['path']}").content
        else:
            out[e["path"]] = e["sha"].encode()
    return out


def texts(api: Api, sid: str) -> list[str]:
    page = api.get(f"/v1/sessions/{sid}/messages", params={"limit": 200}, expect=200).json()
    return [m["parts"][0]["text"] if m["parts"] else "" for m in page["messages"]]


def say(api: Api, sid: str, text: str, role: str = "user") -> dict[str, Any]:
    body = {"role": role, "content": text}
    return api.post(f"/v1/sessions/{sid}/messages", body, expect=201).json()["message"]  # type: ignore[no-any-return]


def session(api: Api, sid: str) -> dict[str, Any]:
    return api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]  # type: ignore[no-any-return]


def rows(client: TestClient, table: sa.Table) -> int:
    def count(tx: Any) -> int:
        return int(tx.conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    return client.app.state.ctx.db.read_sync(count)  # type: ignore[attr-defined,no-any-return]


def test_checkpoint_restore_round_trip(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    put(api, sid, "a.txt", b"one\n")
    say(api, sid, "first")
    api.put(f"/v1/sessions/{sid}/context", {"context": {"step": 1}}, expect=200)
    api.put(f"/v1/sessions/{sid}/tasks", {"tasks": [{"content": "t1"}]}, expect=200)
    cp = api.post(f"/v1/sessions/{sid}/checkpoints", {"label": "v1"}, expect=201).json()
    cp = cp["checkpoint"]
    assert (
        cp["label"] == "v1"
        and cp["auto"] is False
        and cp["tree"] == session(api, sid)["workspace"]["head"]
    )
    saved_files, saved_texts = files(api, sid), texts(api, sid)
    # change everything
    put(api, sid, "a.txt", b"two\n")
    put(api, sid, "b/c.bin", b"\x00\x01")
    say(api, sid, "second")
    say(api, sid, "reply", role="assistant")
    api.put(f"/v1/sessions/{sid}/context", {"context": {"step": 2}}, expect=200)
    api.put(f"/v1/sessions/{sid}/tasks", {"tasks": [{"content": "t2"}]}, expect=200)
    changed_files, changed_texts = files(api, sid), texts(api, sid)
    objects, msgs = rows(client, t.git_objects), rows(client, t.messages)

    r = api.post(f"/v1/sessions/{sid}/restore", {"checkpointId": cp["id"]}, expect=200).json()
    assert files(api, sid) == saved_files and texts(api, sid) == saved_texts
    s = r["session"]
    assert s["context"] == {"step": 1} and s["messageCount"] == 1
    assert s["workspace"]["filesChanged"] == 1 and s["workspace"]["linesAdded"] == 1
    tasks = api.get(f"/v1/sessions/{sid}/tasks").json()["tasks"]
    assert [x["content"] for x in tasks] == ["t1"]
    assert (rows(client, t.git_objects), rows(client, t.messages)) == (objects, msgs)
    # undo the restore
    api.post(f"/v1/sessions/{sid}/restore", {"checkpointId": r["undoCheckpointId"]}, expect=200)
    assert files(api, sid) == changed_files and texts(api, sid) == changed_texts
    assert session(api, sid)["context"] == {"step": 2}
    events = [e["type"] for e in api.get(f"/v1/sessions/{sid}/events").json()["events"]]
    assert events.count("session.restored") == 2


def test_restore_scopes(api: Api) -> None:
    sid = api.session()["id"]
    put(api, sid, "f.txt", b"1")
    say(api, sid, "hello")
    cp = api.post(f"/v1/sessions/{sid}/checkpoints", expect=201).json()["checkpoint"]
    put(api, sid, "f.txt", b"2")
    say(api, sid, "again")
    api.post(
        f"/v1/sessions/{sid}/restore", {"checkpointId": cp["id"], "scope": "files"}, expect=200
    )
    assert files(api, sid) == {"f.txt": b"1"} and texts(api, sid) == ["hello", "again"]
    put(api, sid, "f.txt", b"3")
    api.post(
        f"/v1/sessions/{sid}/restore",
        {"checkpointId": cp["id"], "scope": "conversation"},
        expect=200,
    )
    assert files(api, sid) == {"f.txt": b"3"} and texts(api, sid) == ["hello"]
    api.post(
        f"/v1/sessions/{sid}/restore",
        {"checkpointId": cp["id"], "scope": "most"},
        expect=422,
        code="validation_error",
    )
    api.post(
        f"/v1/sessions/{sid}/restore", {"checkpointId": "cp_nope"}, expect=404, code="not_found"
    )


def test_revert_and_unrevert(client: TestClient, api: Api) -> None:
    sid = api.session()["id"]
    put(api, sid, "app.py", b"v1\n")
    say(api, sid, "make it v2")
    put(api, sid, "app.py", b"v2\n")
    say(api, sid, "done", role="assistant")
    m3 = say(api, sid, "make it v3")
    put(api, sid, "app.py", b"v3\n")
    put(api, sid, "extra.py", b"x\n")
    say(api, sid, "done again", role="assistant")
    before_files, before_texts = files(api, sid), texts(api, sid)
    msgs = rows(client, t.messages)

    r = api.post(f"/v1/sessions/{sid}/revert", {"messageId": m3["id"]}, expect=200).json()
    assert files(api, sid) == {"app.py": b"v2\n"}
    assert texts(api, sid) == ["make it v2", "done"]
    assert r["session"]["messageCount"] == 2
    api.get(f"/v1/sessions/{sid}/messages/{m3['id']}", expect=404)
    assert rows(client, t.messages) == msgs  # nothing deleted
    api.post(f"/v1/sessions/{sid}/unrevert", expect=200)
    assert files(api, sid) == before_files and texts(api, sid) == before_texts
    api.post(f"/v1/sessions/{sid}/unrevert", expect=409, code="invalid_transition")
    # revert, then continue: the conversation goes on from the reverted point
    api.post(f"/v1/sessions/{sid}/revert", {"messageId": m3["id"]}, expect=200)
    new = say(api, sid, "make it v4 instead")
    assert new["seq"] == 3
    api.post(f"/v1/sessions/{sid}/revert", {"messageId": "msg_nope"}, expect=404)


def test_fork_isolation_and_no_copies(client: TestClient, api: Api) -> None:
    parent = api.session(title="parent", tags=["x"])["id"]
    put(api, parent, "shared.txt", b"base\n")
    first = say(api, parent, "hi")
    say(api, parent, "hello", role="assistant")
    api.put(f"/v1/sessions/{parent}/tasks", {"tasks": [{"content": "do it"}]}, expect=200)
    objects, msgs = rows(client, t.git_objects), rows(client, t.messages)
    child = api.post(f"/v1/sessions/{parent}/fork", {"title": "child"}, expect=201).json()
    child = child["session"]
    assert child["parentId"] == parent and child["forkedFrom"]["sessionId"] == parent
    assert child["forkedFrom"]["checkpointId"].startswith("cp_")
    assert child["title"] == "child" and child["tags"] == ["x"]
    cid = child["id"]
    assert (rows(client, t.git_objects), rows(client, t.messages)) == (objects, msgs)
    assert files(api, cid) == {"shared.txt": b"base\n"}
    assert texts(api, cid) == ["hi", "hello"]
    assert child["workspace"]["filesChanged"] == 0  # the fork point is its base
    assert [x["content"] for x in api.get(f"/v1/sessions/{cid}/tasks").json()["tasks"]] == ["do it"]
    # writes on either side never show on the other
    put(api, cid, "shared.txt", b"child\n")
    say(api, cid, "child only")
    put(api, parent, "parent.txt", b"p\n")
    say(api, parent, "parent only")
    assert files(api, parent) == {"shared.txt": b"base\n", "parent.txt": b"p\n"}
    assert files(api, cid) == {"shared.txt": b"child\n"}
    assert texts(api, parent) == ["hi", "hello", "parent only"]
    assert texts(api, cid) == ["hi", "hello", "child only"]
    assert session(api, cid)["workspace"]["filesChanged"] == 1
    # fork from a message: the state just before it
    grand = api.post(f"/v1/sessions/{parent}/fork", {"messageId": first["id"]}, expect=201)
    gid = grand.json()["session"]["id"]
    assert texts(api, gid) == [] and files(api, gid) == {"shared.txt": b"base\n"}
    # fork from a checkpoint
    cp = api.post(f"/v1/sessions/{cid}/checkpoints", expect=201).json()["checkpoint"]
    api.put(f"/v1/sessions/{cid}/files/late.txt", content=b"late", expect=200)
    g2 = api.post(f"/v1/sessions/{cid}/fork", {"checkpointId": cp["id"]}, expect=201).json()
    assert g2["session"]["forkedFrom"] == {"sessionId": cid, "checkpointId": cp["id"]}
    assert "late.txt" not in files(api, g2["session"]["id"])
    api.post(
        f"/v1/sessions/{cid}/fork", {"checkpointId": cp["id"], "messageId": first["id"]}, expect=422
    )
    listed = api.get("/v1/sessions", params={"parentId": parent}).json()["sessions"]
    assert {s["id"] for s in listed} == {cid, gid}


def test_checkpoints_listing_and_auto(
    api: Api, client: TestClient, tenant: Any, other: Any
) -> None:
    sid = api.session()["id"]
    say(api, sid, "one")
    say(api, sid, "two", role="assistant")
    say(api, sid, "three")
    manual = api.post(f"/v1/sessions/{sid}/checkpoints", {"label": "m"}, expect=201).json()
    cps = api.get(f"/v1/sessions/{sid}/checkpoints").json()["checkpoints"]
    assert [c["auto"] for c in cps] == [False, True, True]  # newest first
    assert cps[0]["id"] == manual["checkpoint"]["id"]
    assert cps[0]["messageId"] is not None
    page = api.get(f"/v1/sessions/{sid}/checkpoints", params={"limit": 2}).json()
    rest = api.get(
        f"/v1/sessions/{sid}/checkpoints", params={"cursor": page["nextCursor"], "limit": 2}
    ).json()
    assert [c["id"] for c in page["checkpoints"] + rest["checkpoints"]] == [c["id"] for c in cps]
    got = api.get(f"/v1/sessions/{sid}/checkpoints/{cps[1]['id']}", expect=200).json()
    assert got["checkpoint"] == cps[1]
    reader = Api(client, tenant.read)
    reader.get(f"/v1/sessions/{sid}/checkpoints", expect=200)
    reader.post(f"/v1/sessions/{sid}/checkpoints", expect=403)
    reader.post(f"/v1/sessions/{sid}/fork", expect=403)
    intruder = Api(client, other.admin)
    for method, path, body in (
        ("GET", f"/v1/sessions/{sid}/checkpoints", None),
        ("GET", f"/v1/sessions/{sid}/checkpoints/{cps[0]['id']}", None),
        ("POST", f"/v1/sessions/{sid}/checkpoints", {}),
        ("POST", f"/v1/sessions/{sid}/restore", {"checkpointId": cps[0]["id"]}),
        ("POST", f"/v1/sessions/{sid}/revert", {"messageId": "msg_x"}),
        ("POST", f"/v1/sessions/{sid}/unrevert", None),
        ("POST", f"/v1/sessions/{sid}/fork", {}),
        ("GET", f"/v1/sessions/{sid}/files?at={cps[0]['id']}", None),
    ):
        intruder.request(method, path, json=body, expect=404, code="not_found")
    api.post(f"/v1/sessions/{sid}/close", expect=200)
    api.post(f"/v1/sessions/{sid}/checkpoints", expect=409, code="session_not_active")
    api.post(f"/v1/sessions/{sid}/restore", {"checkpointId": cps[0]["id"]}, expect=409)
    # a closed session can still be forked (the way to continue it)
    api.post(f"/v1/sessions/{sid}/fork", expect=201)


def test_session_sources(client: TestClient, api: Api, other: Any) -> None:
    seeded = api.post(
        "/v1/sessions",
        {"title": "seeded", "source": {"files": {"README.md": "# hi\n", "src/a.py": "x = 1\n"}}},
        expect=201,
    ).json()["session"]
    sid = seeded["id"]
    assert files(api, sid) == {"README.md": b"# hi\n", "src/a.py": b"x = 1\n"}
    ws = seeded["workspace"]
    assert ws["head"] == ws["base"] and ws["filesChanged"] == 0
    objects = rows(client, t.git_objects)
    cp = api.post(f"/v1/sessions/{sid}/checkpoints", expect=201).json()["checkpoint"]
    put(api, sid, "later.txt", b"later")
    from_session = api.post("/v1/sessions", {"source": {"sessionId": sid}}, expect=201).json()
    assert files(api, from_session["session"]["id"]) == files(api, sid)
    from_cp = api.post(
        "/v1/sessions", {"source": {"sessionId": sid, "checkpointId": cp["id"]}}, expect=201
    ).json()
    assert "later.txt" not in files(api, from_cp["session"]["id"])
    assert rows(client, t.git_objects) == objects + 2  # only later.txt's blob and its tree
    for bad, code in (
        ({"git": {"url": "ssh://example.com/x.git"}}, "validation_error"),  # no ssh
        ({"files": {"../x": "y"}}, "invalid_path"),
        ({"files": {"a": 1}}, "validation_error"),
        ({"files": {"a": "b"}, "sessionId": sid}, "validation_error"),
        ({"nothing": 1}, "validation_error"),
    ):
        api.post("/v1/sessions", {"source": bad}, expect=422, code=code)
    api.post("/v1/sessions", {"source": {"sessionId": "ses_nope"}}, expect=404)
    Api(client, other.write).post("/v1/sessions", {"source": {"sessionId": sid}}, expect=404)
    api.post("/v1/sessions", {"source": {"sessionId": sid, "checkpointId": "cp_x"}}, expect=404)


def test_fork_reverts_to_a_message_it_inherited(api: Api) -> None:
    """The checkpoint before "one" was recorded by the parent; the fork shares that history."""
    parent = api.session()["id"]
    put(api, parent, "a.txt", b"a\n")
    one = say(api, parent, "one")
    put(api, parent, "b.txt", b"b\n")
    say(api, parent, "two")
    fork = api.post(f"/v1/sessions/{parent}/fork", {}, expect=201).json()["session"]["id"]
    assert files(api, fork) == {"a.txt": b"a\n", "b.txt": b"b\n"}
    api.post(f"/v1/sessions/{fork}/revert", {"messageId": one["id"]}, expect=200)
    assert texts(api, fork) == []
    assert files(api, fork) == {"a.txt": b"a\n"}
    api.post(f"/v1/sessions/{fork}/unrevert", {}, expect=200)
    assert texts(api, fork) == ["one", "two"]
    assert files(api, fork) == {"a.txt": b"a\n", "b.txt": b"b\n"}
    # The parent is untouched, and reverting to an assistant message the fork inherited
    # takes the state before the closest user message before it.
    reply = say(api, parent, "ok", role="assistant")
    fork2 = api.post(f"/v1/sessions/{parent}/fork", {}, expect=201).json()["session"]["id"]
    api.post(f"/v1/sessions/{fork2}/revert", {"messageId": reply["id"]}, expect=200)
    assert texts(api, fork2) == ["one", "two"]
    assert files(api, fork2) == {"a.txt": b"a\n", "b.txt": b"b\n"}
    assert texts(api, parent) == ["one", "two", "ok"]
    assert files(api, parent) == {"a.txt": b"a\n", "b.txt": b"b\n"}
