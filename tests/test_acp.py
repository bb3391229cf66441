"""``/api/acp`` as an ACP client sees it: JSON-RPC over POST and the session's ACP
messages over SSE, checked against the ACP SDK's own schema models, with the scripted
agent behind it (the real opencode behind it is in tests/test_opencode.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from acp import schema
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.settings import Settings
from tests.support.acp_http import AcpHttp
from tests.support.api import Tenant


@pytest.fixture
def acp(client: TestClient, tenant: Tenant) -> AcpHttp:
    return AcpHttp(client, tenant.write)


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def _prompt_in_thread(acp: AcpHttp, sid: str, text: str) -> dict[str, Any]:
    """Run session/prompt (which answers when the turn ends) beside the test."""
    out: dict[str, Any] = {}
    request = schema.PromptRequest(
        session_id=sid, prompt=[schema.TextContentBlock(type="text", text=text)]
    )

    def run() -> None:
        out["response"] = acp.call("session/prompt", _dump(request))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    out["thread"] = thread
    return out


def test_a_turn_with_a_permission_round_trip(acp: AcpHttp) -> None:
    init = acp.result("initialize", _dump(schema.InitializeRequest(protocol_version=1)))
    init = schema.InitializeResponse.model_validate(init)
    assert init.protocol_version == 1 and init.agent_capabilities.load_session is True
    assert init.agent_info is not None and init.agent_info.name == "sessiond"
    new = acp.result("session/new", {"cwd": "/anywhere", "mcpServers": [], "provider": "scripted"})
    new = schema.NewSessionResponse.model_validate(new)
    sid = new.session_id
    assert sid.startswith("ses_")
    stream = acp.stream(sid)
    running = _prompt_in_thread(acp, sid, "say: hello\nask: t1 execute rm -rf build\nsay: after")
    seen = stream.until(lambda m: m.get("method") == "session/request_permission")
    ask = seen[-1][1]
    request = schema.RequestPermissionRequest.model_validate(ask["params"])
    assert request.session_id == sid and request.tool_call.title == "rm -rf build"
    allow = next(o for o in request.options if o.kind == "allow_once")
    answer = schema.RequestPermissionResponse(
        outcome=schema.AllowedOutcome(outcome="selected", option_id=allow.option_id)
    )
    assert acp.post({"jsonrpc": "2.0", "id": ask["id"], "result": _dump(answer)}) is None
    running["thread"].join(timeout=30)
    response = running["response"]
    assert schema.PromptResponse.model_validate(response["result"]).stop_reason == "end_turn"
    rest = stream.until(_agent_said("after"))
    stream.close()
    messages = [m for _, m in seen + rest]
    updates = [
        schema.SessionNotification.model_validate(m["params"])
        for m in messages
        if m.get("method") == "session/update"
    ]
    kinds = [u.update.session_update for u in updates]
    assert kinds[0] == "user_message_chunk"
    assert "agent_message_chunk" in kinds
    text = "".join(
        u.update.content.text  # type: ignore[union-attr]
        for u in updates
        if u.update.session_update == "agent_message_chunk"
    )
    assert text.startswith("hello") and "granted:once" in text and text.endswith("after")


def _agent_said(word: str) -> Any:
    def match(m: dict[str, Any]) -> bool:
        update = m.get("params", {}).get("update", {})
        return bool(
            update.get("sessionUpdate") == "agent_message_chunk"
            and word in update.get("content", {}).get("text", "")
        )

    return match


def test_replay_with_last_event_id_has_no_gap_and_no_duplicate(
    acp: AcpHttp, settings: Settings, tenant: Tenant, client: TestClient
) -> None:
    sid = acp.result("session/new", {"provider": "scripted"})["sessionId"]
    acp.result(
        "session/prompt",
        {
            "sessionId": sid,
            "prompt": [{"type": "text", "text": "chunks: 30 4\nplan: one two\nsay: end"}],
        },
    )
    full = acp.stream(sid)
    everything = full.until(_agent_said("end"))
    full.close()
    ids = [i for i, _ in everything if i is not None]
    assert ids == sorted(ids, key=int) and len(ids) >= 3
    middle = ids[len(ids) // 2]
    resumed = acp.stream(sid, last_event_id=middle)
    after = [m for i, m in everything[[i for i, _ in everything].index(middle) + 1 :]]
    got = [m for _, m in resumed.until(_agent_said("end"))]
    resumed.close()
    assert got == after
    kinds = [m["params"]["update"]["sessionUpdate"] for m in after if "params" in m]
    assert "plan" in kinds or "plan" in [
        m["params"]["update"]["sessionUpdate"] for _, m in everything if "params" in m
    ]
    # The same replay from another process on the same database (a restart).
    client.__exit__(None, None, None)
    with TestClient(create_app(settings), raise_server_exceptions=False) as again:
        again_acp = AcpHttp(again, tenant.write)
        replay = again_acp.stream(sid, last_event_id=middle)
        assert [m for _, m in replay.until(_agent_said("end"))] == after
        replay.close()


def test_errors_use_json_rpc_codes(
    acp: AcpHttp, client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    sid = acp.result("session/new", {"provider": "scripted"})["sessionId"]
    assert acp.call("nope")["error"]["code"] == -32601
    r = client.post("/api/acp", content=b"{not json", headers=acp.headers)
    assert r.status_code == 200 and r.json()["error"]["code"] == -32700
    assert acp.post({"id": 1, "method": "initialize"})["error"]["code"] == -32600
    assert acp.post([])["error"]["code"] == -32600
    bad = acp.call("session/prompt", {"sessionId": sid, "prompt": [{"type": "image"}]})
    assert bad["error"]["code"] == -32602
    missing = acp.call("session/load", {"sessionId": "ses_nope"})
    assert missing["error"]["data"]["code"] == "not_found"
    theirs = AcpHttp(client, other.write)
    for method in ("session/load", "session/prompt", "session/set_mode"):
        params = {"sessionId": sid, "prompt": [{"type": "text", "text": "x"}], "modeId": "x"}
        assert theirs.call(method, params)["error"]["data"]["code"] == "not_found"
    r = client.get(f"/api/acp?sessionId={sid}", headers=theirs.headers)
    assert r.status_code == 404
    reader = AcpHttp(client, tenant.read)
    assert reader.call("session/new", {"provider": "scripted"})["error"]["data"]["code"] == (
        "forbidden"
    )
    assert reader.result("session/load", {"sessionId": sid}) is not None
    r = client.post("/api/acp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    assert r.status_code == 401
    # A batch: answers for the requests only; notifications only → 204.
    batch = acp.post(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": {"protocolVersion": 1}},
            {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": sid}},
            {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        ]
    )
    assert sorted(x["id"] for x in batch) == ["a", "b"]
    assert (
        acp.post({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": sid}})
        is None
    )
    unknown = acp.call("session/new", {"provider": "nope"})
    assert unknown["error"]["code"] == -32602
    listed = acp.result("session/list", {})
    assert sid in [
        s["sessionId"]
        for s in schema.ListSessionsResponse.model_validate(listed).model_dump(by_alias=True)[
            "sessions"
        ]
    ]


def test_modes_and_busy_sessions(acp: AcpHttp) -> None:
    new = acp.result("session/new", {"provider": "scripted", "modeId": "build"})
    sid = new["sessionId"]
    acp.result("session/prompt", {"sessionId": sid, "prompt": [{"type": "text", "text": "say: x"}]})
    loaded = acp.result("session/load", {"sessionId": sid})
    modes = schema.LoadSessionResponse.model_validate(loaded).modes
    assert modes is not None and {m.id for m in modes.available_modes} >= {"build"}
    assert acp.result("session/set_mode", {"sessionId": sid, "modeId": "plan"}) == {}
    bad = acp.call("session/set_mode", {"sessionId": sid, "modeId": "nope"})
    assert bad["error"]["code"] == -32602
