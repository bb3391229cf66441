"""Messages over HTTP: append (parts and shorthand), list/paginate, get, patch, delete."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api


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
    api.post(url, {"role": "user", "content": "x" * (limit + 1)}, expect=413, code="payload_too_large")
    m = api.post(url, {"role": "assistant", "content": "", "status": "streaming"}, expect=201)
    mid = m.json()["message"]["id"]
    api.patch(f"{url}/{mid}", {"appendText": "y" * (limit // 2)}, expect=200)
    api.patch(f"{url}/{mid}", {"appendText": "y" * (limit // 2)}, expect=413)
    assert msgs(api, sid)["messages"][0]["parts"][0]["text"] == "y" * (limit // 2)
