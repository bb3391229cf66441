"""Messages over HTTP: append (parts and shorthand), list/paginate, get, patch, delete."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api
from tests.support.clock import Clock
from tests.support.purge import purge


def msgs(api: Api, sid: str, **params: Any) -> dict[str, Any]:
    return api.get(f"/v1/sessions/{sid}/messages", params=params, expect=200).json()  # type: ignore[no-any-return]


def add(api: Api, sid: str, text: str, role: str = "user", **kw: Any) -> dict[str, Any]:
    body = {"role": role, "content": text, **kw}
    return api.post(f"/v1/sessions/{sid}/messages", body, expect=201).json()["message"]  # type: ignore[no-any-return]


def test_append_shorthand_and_parts(api: Api) -> None:
    sid = api.session()["id"]
    first = add(api, sid, "hello")
    assert first["id"].startswith("msg_")
    assert first["seq"] == 1 and first["parentId"] is None and first["sessionId"] == sid
    assert first["parts"] == [{"type": "text", "text": "hello"}]
    assert first["status"] == "complete" and first["metadata"] == {}
    parts = [
        {"type": "reasoning", "text": "thinking"},
        {"type": "tool_call", "toolCallId": "c1", "name": "read", "input": {"path": "a"}},
        {"type": "tool_result", "tool_call_id": "c1", "output": "x", "isError": False},
        {"type": "file", "mimeType": "image/png", "data": "aGVsbG8="},
        {"type": "data", "data": {"k": 1}},
        {"type": "text", "text": "done"},
    ]
    second = api.post(
        f"/v1/sessions/{sid}/messages", {"role": "assistant", "parts": parts}, expect=201
    ).json()["message"]
    assert second["seq"] == 2 and second["parentId"] == first["id"]
    assert second["parts"][1]["status"] == "pending"
    assert second["parts"][2] == {
        "type": "tool_result",
        "toolCallId": "c1",
        "output": "x",
        "isError": False,
    }
    session = api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]
    assert session["messageCount"] == 2
    page = msgs(api, sid)
    assert [m["id"] for m in page["messages"]] == [first["id"], second["id"]]
    assert page["nextCursor"] is None
    got = api.get(f"/v1/sessions/{sid}/messages/{second['id']}", expect=200).json()["message"]
    assert got == second


@pytest.mark.parametrize(
    ("part", "field"),
    [
        ({"type": "video", "url": "x"}, "parts[1].type"),
        ({"type": "text"}, "parts[1].text"),
        ({"type": "text", "text": "a", "extra": 1}, "parts[1].extra"),
        ({"type": "tool_call", "name": "x"}, "parts[1].toolCallId"),
        ({"type": "tool_call", "toolCallId": "a", "name": "x", "status": "odd"}, "parts[1].status"),
        ({"type": "file", "mimeType": "a/b", "data": "@@@"}, "parts[1].data"),
        ({"type": "file", "mimeType": "a/b"}, "parts[1]"),
        ({"type": "data", "data": [1]}, "parts[1].data"),
        ("text", "parts[1]"),
    ],
)
def test_bad_parts_name_the_index(api: Api, part: Any, field: str) -> None:
    sid = api.session()["id"]
    body = {"role": "user", "parts": [{"type": "text", "text": "ok"}, part]}
    r = api.post(f"/v1/sessions/{sid}/messages", body, expect=422, code="validation_error")
    fields = [e["field"] for e in r.json()["details"]["errors"]]
    assert field in fields
    assert msgs(api, sid)["messages"] == []


def test_bad_message_bodies(api: Api) -> None:
    sid = api.session()["id"]
    url = f"/v1/sessions/{sid}/messages"
    api.post(url, {"role": "robot", "content": "x"}, expect=422, code="validation_error")
    api.post(url, {"content": "x"}, expect=422, code="validation_error")
    api.post(url, {"role": "user"}, expect=422, code="validation_error")
    api.post(url, {"role": "user", "content": "x", "parts": []}, expect=422)
    api.post(url, {"role": "user", "parts": "x"}, expect=422)
    api.post(url, {"role": "user", "content": "x", "status": "streaming"}, expect=422)
    api.post(url, {"role": "user", "content": "x", "colour": 1}, expect=422)
    api.post("/v1/sessions/ses_nope/messages", {"role": "user", "content": "x"}, expect=404)
    assert api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]["messageCount"] == 0


def test_oversized_message(client: Any, api: Api) -> None:
    limit = client.app.state.ctx.settings.limits.message_bytes
    sid = api.session()["id"]
    url = f"/v1/sessions/{sid}/messages"
    api.post(
        url, {"role": "user", "content": "x" * (limit + 1)}, expect=413, code="payload_too_large"
    )
    m = api.post(url, {"role": "assistant", "content": "", "status": "streaming"}, expect=201)
    mid = m.json()["message"]["id"]
    api.patch(f"{url}/{mid}", {"appendText": "y" * (limit // 2)}, expect=200)
    api.patch(f"{url}/{mid}", {"appendText": "y" * (limit // 2)}, expect=413)
    assert msgs(api, sid)["messages"][0]["parts"][0]["text"] == "y" * (limit // 2)


# -- listing and pagination ------------------------------------------------------------------


def seed(api: Api, sid: str, n: int) -> list[dict[str, Any]]:
    return [add(api, sid, f"m{i}", role="user" if i % 2 else "assistant") for i in range(1, n + 1)]


def seqs(page: dict[str, Any]) -> list[int]:
    return [m["seq"] for m in page["messages"]]


def test_windows_after_before_desc(api: Api) -> None:
    sid = api.session()["id"]
    made = seed(api, sid, 12)
    assert seqs(msgs(api, sid, after=3, limit=4)) == [4, 5, 6, 7]
    assert seqs(msgs(api, sid, before=10, limit=3)) == [7, 8, 9]
    assert seqs(msgs(api, sid, before=3, limit=5)) == [1, 2]
    assert seqs(msgs(api, sid, order="desc", limit=4)) == [12, 11, 10, 9]
    assert seqs(msgs(api, sid, order="desc", before=5)) == [4, 3, 2, 1]
    assert seqs(msgs(api, sid, after=4, before=8)) == [5, 6, 7]
    assert seqs(msgs(api, sid, after=12)) == []
    assert seqs(msgs(api, sid, after=100)) == []
    page = msgs(api, sid, after=5, limit=3)
    assert [m["parentId"] for m in page["messages"]] == [
        made[4]["id"],
        made[5]["id"],
        made[6]["id"],
    ]
    first = msgs(api, sid, limit=1)["messages"][0]
    assert first["parentId"] is None and first["id"] == made[0]["id"]


def collect(api: Api, sid: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = msgs(api, sid, **params)
    out += page["messages"]
    while page["nextCursor"]:
        page = msgs(api, sid, cursor=page["nextCursor"])
        out += page["messages"]
    return out


def test_cursor_pagination_every_direction(api: Api) -> None:
    sid = api.session()["id"]
    made = [m["id"] for m in seed(api, sid, 23)]
    assert [m["id"] for m in collect(api, sid, limit=5)] == made
    assert [m["id"] for m in collect(api, sid, limit=5, order="desc")] == made[::-1]
    # before-mode pages walk back through older history, each page oldest first
    pages = []
    page = msgs(api, sid, before=21, limit=6)
    pages.append(seqs(page))
    while page["nextCursor"]:
        page = msgs(api, sid, cursor=page["nextCursor"])
        pages.append(seqs(page))
    assert pages == [[15, 16, 17, 18, 19, 20], [9, 10, 11, 12, 13, 14], [3, 4, 5, 6, 7, 8], [1, 2]]
    assert [m["seq"] for m in collect(api, sid, after=4, before=15, limit=4)] == list(range(5, 15))


def test_pagination_is_stable_while_appending_and_deleting(api: Api) -> None:
    sid = api.session()["id"]
    made = [m["id"] for m in seed(api, sid, 20)]
    seen: list[str] = []
    page = msgs(api, sid, limit=6)
    seen += [m["id"] for m in page["messages"]]
    extra = 0
    while page["nextCursor"]:
        made.append(add(api, sid, f"late{extra}")["id"])
        extra += 1
        page = msgs(api, sid, cursor=page["nextCursor"])
        seen += [m["id"] for m in page["messages"]]
    assert seen == made  # every message once, in order, including the late ones
    # the anchor of a cursor is deleted: the next page continues right after it
    page = msgs(api, sid, limit=5)
    anchor = page["messages"][-1]["id"]
    api.delete(f"/v1/sessions/{sid}/messages/{anchor}", expect=204)
    nxt = msgs(api, sid, cursor=page["nextCursor"])
    assert nxt["messages"][0]["id"] == made[5]
    # a delete before the anchor shifts seqs, but the cursor finds its anchor by id
    page = msgs(api, sid, limit=8)
    api.delete(f"/v1/sessions/{sid}/messages/{made[1]}", expect=204)
    nxt = msgs(api, sid, cursor=page["nextCursor"])
    assert nxt["messages"][0]["id"] == made[9]


@pytest.mark.parametrize(
    "params",
    [
        {"order": "sideways"},
        {"limit": 0},
        {"limit": 201},
        {"after": -1},
        {"before": -2},
        {"cursor": "garbage"},
        {"after": "x"},
    ],
)
def test_bad_list_parameters(api: Api, params: dict[str, Any]) -> None:
    sid = api.session()["id"]
    api.get(f"/v1/sessions/{sid}/messages", params=params, expect=422, code="validation_error")


def test_include_messages_on_session(api: Api) -> None:
    sid = api.session()["id"]
    made = seed(api, sid, 60)
    body = api.get(f"/v1/sessions/{sid}?include=messages", expect=200).json()
    assert body["session"]["messageCount"] == 60
    assert [m["id"] for m in body["messages"]] == [m["id"] for m in made[:50]]
    assert "messages" not in api.get(f"/v1/sessions/{sid}", expect=200).json()
    api.get(f"/v1/sessions/{sid}?include=files", expect=422, code="validation_error")
    empty = api.session()["id"]
    assert api.get(f"/v1/sessions/{empty}?include=messages").json()["messages"] == []


def test_message_count_and_activity(api: Api) -> None:
    s = api.session()
    before = s["lastActivityAt"]
    add(api, s["id"], "hi")
    after = api.get(f"/v1/sessions/{s['id']}", expect=200).json()["session"]
    assert after["messageCount"] == 1
    assert after["lastActivityAt"] >= before
    assert after["lifecycleVersion"] == s["lifecycleVersion"]  # counters do not bump it


# -- patch -------------------------------------------------------------------------------------


def test_streaming_then_complete(api: Api) -> None:
    sid = api.session()["id"]
    url = f"/v1/sessions/{sid}/messages"
    m = api.post(url, {"role": "assistant", "parts": [], "status": "streaming"}, expect=201)
    mid = m.json()["message"]["id"]
    api.patch(f"{url}/{mid}", {"appendText": "Hel"}, expect=200)
    r = api.patch(f"{url}/{mid}", {"appendText": "lo"}, expect=200).json()["message"]
    assert r["parts"] == [{"type": "text", "text": "Hello"}]
    call = {"type": "tool_call", "toolCallId": "t1", "name": "grep", "input": {"q": "x"}}
    r = api.patch(f"{url}/{mid}", {"appendParts": [call]}, expect=200).json()["message"]
    assert r["parts"][1]["status"] == "pending"
    r = api.patch(f"{url}/{mid}", {"appendText": "!"}, expect=200).json()["message"]
    assert r["parts"][2] == {"type": "text", "text": "!"}
    r = api.patch(f"{url}/{mid}", {"status": "complete", "metadata": {"tokens": 3}}, expect=200)
    done = r.json()["message"]
    assert done["status"] == "complete" and done["metadata"] == {"tokens": 3}
    assert api.get(f"{url}/{mid}").json()["message"] == done
    # complete: only tool_call status/output may change
    for body in (
        {"appendText": "more"},
        {"appendParts": [{"type": "text", "text": "x"}]},
        {"status": "streaming"},
        {"metadata": {"tokens": 4}},
        {"parts": [{"type": "text", "text": "rewritten"}]},
    ):
        api.patch(f"{url}/{mid}", body, expect=409, code="invalid_transition")
    upd = {"toolCall": {"toolCallId": "t1", "status": "completed", "output": {"hits": 2}}}
    r = api.patch(f"{url}/{mid}", upd, expect=200).json()["message"]
    assert r["parts"][1]["status"] == "completed" and r["parts"][1]["output"] == {"hits": 2}
    parts = r["parts"]
    parts[1] = {**parts[1], "status": "error", "error": "boom"}
    r = api.patch(f"{url}/{mid}", {"parts": parts}, expect=200).json()["message"]
    assert r["parts"][1]["status"] == "error" and r["parts"][1]["error"] == "boom"
    bad = {"toolCall": {"toolCallId": "nope", "status": "completed"}}
    api.patch(f"{url}/{mid}", bad, expect=422, code="validation_error")
    api.patch(f"{url}/{mid}", {"toolCall": {"toolCallId": "t1", "status": "x"}}, expect=422)
    api.patch(f"{url}/{mid}", {"appendParts": [{"type": "nope"}]}, expect=422)
    api.patch(f"{url}/{mid}", {"status": None}, expect=422)
    api.patch(f"{url}/msg_01JZZZZZZZZZZZZZZZZZZZZZZZ", {"appendText": "x"}, expect=404)
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    updates = [e for e in events if e["type"] == "message.updated"]
    assert len(updates) == 7
    assert updates[-1]["data"]["message"]["parts"][1]["status"] == "error"


def test_no_change_patch_emits_nothing(api: Api) -> None:
    sid = api.session()["id"]
    mid = add(api, sid, "x")["id"]
    api.patch(f"/v1/sessions/{sid}/messages/{mid}", {}, expect=200)
    api.patch(f"/v1/sessions/{sid}/messages/{mid}", {"status": "complete"}, expect=200)
    types = [e["type"] for e in api.get(f"/v1/sessions/{sid}/events").json()["events"]]
    assert "message.updated" not in types


# -- delete ------------------------------------------------------------------------------------


def test_delete_reparents_and_shifts(api: Api) -> None:
    sid = api.session()["id"]
    a, b, c, d = (m["id"] for m in seed(api, sid, 4))
    api.delete(f"/v1/sessions/{sid}/messages/{b}", expect=204)
    page = msgs(api, sid)["messages"]
    assert [(m["id"], m["seq"], m["parentId"]) for m in page] == [
        (a, 1, None),
        (c, 2, a),
        (d, 3, c),
    ]
    api.get(f"/v1/sessions/{sid}/messages/{b}", expect=404, code="not_found")
    api.delete(f"/v1/sessions/{sid}/messages/{b}", expect=404)
    api.delete(f"/v1/sessions/{sid}/messages/{a}", expect=204)
    assert api.get(f"/v1/sessions/{sid}/messages/{c}").json()["message"]["parentId"] is None
    api.delete(f"/v1/sessions/{sid}/messages/{d}", expect=204)
    e = add(api, sid, "after the deletes")
    assert (e["seq"], e["parentId"]) == (2, c)
    s = api.get(f"/v1/sessions/{sid}").json()["session"]
    assert s["messageCount"] == 2
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    deleted = [e["data"] for e in events if e["type"] == "message.deleted"]
    assert deleted == [{"id": b, "seq": 2}, {"id": a, "seq": 1}, {"id": d, "seq": 2}]


# -- session state, idempotency, roles, isolation ----------------------------------------------


def test_writes_need_an_active_session(api: Api, clock: Clock) -> None:
    for how in ("closed", "archived", "expired", "completed"):
        s = api.session(ttlSeconds=3600)
        sid = s["id"]
        mid = add(api, sid, "x", role="assistant", status="streaming")["id"]
        if how == "closed":
            api.post(f"/v1/sessions/{sid}/close", expect=200)
        elif how == "expired":
            clock.advance(3600)
        else:
            api.patch(f"/v1/sessions/{sid}", {"status": how}, expect=200)
        url = f"/v1/sessions/{sid}/messages"
        r = api.post(url, {"role": "user", "content": "y"}, expect=409, code="session_not_active")
        assert how in r.json()["error"]
        api.patch(f"{url}/{mid}", {"appendText": "z"}, expect=409, code="session_not_active")
        api.delete(f"{url}/{mid}", expect=409, code="session_not_active")
        assert seqs(msgs(api, sid)) == [1]
        api.get(f"{url}/{mid}", expect=200)


def test_idempotent_append(api: Api) -> None:
    sid = api.session()["id"]
    url = f"/v1/sessions/{sid}/messages"
    body = {"role": "user", "content": "once"}
    h = {"Idempotency-Key": "k-1"}
    first = api.post(url, body, headers=h, expect=201)
    again = api.post(url, body, headers=h, expect=201)
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    api.post(
        url,
        {"role": "user", "content": "other"},
        headers=h,
        expect=422,
        code="idempotency_mismatch",
    )
    assert seqs(msgs(api, sid)) == [1]
    created = [
        e
        for e in api.get(f"/v1/sessions/{sid}/events").json()["events"]
        if e["type"] == "message.created"
    ]
    assert len(created) == 1
    assert created[0]["data"]["message"] == first.json()["message"]


def test_roles_and_isolation(client: Any, api: Api, tenant: Any, other: Any) -> None:
    sid = api.session()["id"]
    mid = add(api, sid, "secret")["id"]
    url = f"/v1/sessions/{sid}/messages"
    reader = Api(client, tenant.read)
    reader.get(url, expect=200)
    reader.get(f"{url}/{mid}", expect=200)
    reader.post(url, {"role": "user", "content": "x"}, expect=403, code="forbidden")
    reader.patch(f"{url}/{mid}", {"appendText": "x"}, expect=403)
    reader.delete(f"{url}/{mid}", expect=403)
    intruder = Api(client, other.admin)
    for method, path, body in (
        ("GET", url, None),
        ("POST", url, {"role": "user", "content": "x"}),
        ("GET", f"{url}/{mid}", None),
        ("PATCH", f"{url}/{mid}", {"appendText": "x"}),
        ("DELETE", f"{url}/{mid}", None),
        ("GET", f"/v1/sessions/{sid}?include=messages", None),
    ):
        intruder.request(method, path, json=body, expect=404, code="not_found")
    # a message id of another session of the same account is not found through this one
    sid2 = api.session()["id"]
    api.get(f"/v1/sessions/{sid2}/messages/{mid}", expect=404)
    api.delete(f"/v1/sessions/{sid2}/messages/{mid}", expect=404)
    assert seqs(msgs(api, sid)) == [1]
    assert msgs(api, sid)["messages"][0]["parts"][0]["text"] == "secret"


def test_deleting_the_session_deletes_its_messages(client: Any, api: Api) -> None:
    import sqlalchemy as sa

    from sessiond.db import tables as t

    sid = api.session()["id"]
    seed(api, sid, 3)
    db = client.app.state.ctx.db

    def count(tx: Any) -> int:
        q = sa.select(sa.func.count()).select_from(t.messages).where(t.messages.c.session_id == sid)
        return int(tx.conn.execute(q).scalar_one())

    assert db.read_sync(count) == 3
    api.delete(f"/v1/sessions/{sid}", expect=204)
    purge(client)  # rows go in the background (docs/design/deletion.md)
    assert db.read_sync(count) == 0


# -- concurrency (a real server) ----------------------------------------------------------------


def test_concurrent_retries_and_paging_during_appends(settings: Any, tenant: Any) -> None:
    """Eight clients retry the same append with one Idempotency-Key (exactly one message),
    while writers append and a reader pages through with cursors (no gap, no duplicate)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.support.live import live_server

    with live_server(settings) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        api = Api(http, tenant.write)
        sid = api.session()["id"]
        url = f"/v1/sessions/{sid}/messages"

        def retry(_: int) -> tuple[int, str]:
            with httpx.Client(base_url=live.url, timeout=30) as c:
                r = Api(c, tenant.write).post(
                    url, {"role": "user", "content": "once"}, headers={"Idempotency-Key": "same"}
                )
                return r.status_code, r.json()["message"]["id"]

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(retry, range(8)))
        assert {status for status, _ in outcomes} == {201}
        assert len({mid for _, mid in outcomes}) == 1
        assert [m["id"] for m in msgs(api, sid)["messages"]] == [outcomes[0][1]]

        stop = threading.Event()
        appended: list[str] = []

        def writer() -> None:
            with httpx.Client(base_url=live.url, timeout=30) as c:
                w = Api(c, tenant.write)
                for i in range(60):
                    r = w.post(url, {"role": "assistant", "content": f"w{i}"}, expect=201)
                    appended.append(r.json()["message"]["id"])
            stop.set()

        t = threading.Thread(target=writer)
        t.start()
        seen: list[str] = []
        page = msgs(api, sid, limit=7)
        seen += [m["id"] for m in page["messages"]]
        while True:
            cursor = page["nextCursor"]
            if cursor is None:
                if stop.is_set() and len(seen) == len(appended) + 1:
                    break
                # caught up with the writer: continue after the last message seen
                page = msgs(api, sid, after=len(seen), limit=7)
            else:
                page = msgs(api, sid, cursor=cursor)
            seen += [m["id"] for m in page["messages"]]
        t.join()
        assert seen == [outcomes[0][1], *appended]


def test_if_match_on_message_writes(api: Api) -> None:
    s = api.session()
    sid, version = s["id"], s["lifecycleVersion"]
    url = f"/v1/sessions/{sid}/messages"
    stale = {"If-Match": f'"{version + 7}"'}
    body = {"role": "assistant", "content": "x", "status": "streaming"}
    api.post(url, body, headers=stale, expect=412, code="precondition_failed")
    mid = api.post(url, body, headers={"If-Match": f'"{version}"'}, expect=201).json()["message"][
        "id"
    ]
    api.patch(f"{url}/{mid}", {"appendText": "y"}, headers=stale, expect=412)
    api.delete(f"{url}/{mid}", headers=stale, expect=412)
    assert msgs(api, sid)["messages"][0]["parts"] == [{"type": "text", "text": "x"}]
    api.patch(f"{url}/{mid}", {"appendText": "y"}, headers={"If-Match": f'"{version}"'}, expect=200)
    api.delete(f"{url}/{mid}", headers={"If-Match": f'"{version}"'}, expect=204)
