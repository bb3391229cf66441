"""A real agent: ``opencode acp`` (npm ``opencode-ai``, pinned in
tests/support/install_opencode.sh) run by the server, its model a mock OpenAI-compatible
server on loopback (tests/support/mock_model.py).

Outside CI the tests skip, saying why, when opencode is not installed; in CI (``CI`` set)
a missing opencode fails them: ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.auth import service as auth
from sessiond.settings import Settings
from tests.support import mock_model
from tests.support.api import Api
from tests.support.mock_model import MockModel
from tests.support.opencode import find_opencode, opencode_env

OPENCODE = find_opencode()

pytestmark = pytest.mark.slow


@pytest.fixture
def opencode() -> str:
    if OPENCODE is None:
        message = (
            "opencode is not installed: run `bash tests/support/install_opencode.sh "
            ".cache/opencode` (needs npm) or set SESSIOND_TEST_OPENCODE"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return OPENCODE


@pytest.fixture
def model() -> Iterator[MockModel]:
    with MockModel() as m:
        yield m


@pytest.fixture
def oc_settings(
    settings: Settings,
    model: MockModel,
    opencode: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """The suite's settings with one agent, ``opencode``, pointed at the mock model."""
    # Outside the data dir (never shown in a sandbox) and readable by the sandbox's uid.
    config = tmp_path_factory.mktemp("opencode-config")
    env = opencode_env(config, model.url)
    for folder, _, names in os.walk(config):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    path = tmp_path / "opencode-agents.toml"
    path.write_text(
        "[agents.opencode]\n"
        f"command = {json.dumps([opencode, 'acp'])}\n"
        f"ro_paths = {json.dumps([str(config)])}\n"
        f"env = {{ {', '.join(f'{k} = {json.dumps(v)}' for k, v in env.items())} }}\n"
    )
    # opencode starts in 2-6 s on a busy 2-core machine: the suite's 3 s start limit is for
    # the scripted agent.
    update = {
        "agents_file": path,
        "cancel_grace_seconds": 10.0,
        "agent_start_timeout_seconds": 120.0,
    }
    return settings.model_copy(update=update)


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _api(client: TestClient, secret: str | None = None) -> Api:
    if secret is None:
        secret = str(client.app.state.ctx.db.write_sync(auth.bootstrap))  # type: ignore[attr-defined]
    return Api(client, secret)


def _wait(api: Api, sid: str, turn_id: str, seconds: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        turn = api.get(f"/v1/sessions/{sid}/turns/{turn_id}", params={"wait": 10}).json()["turn"]
        if turn["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return turn  # type: ignore[no-any-return]


def _assistant_texts(api: Api, sid: str) -> list[str]:
    msgs = api.get(f"/v1/sessions/{sid}/messages", params={"limit": 200}).json()["messages"]
    return [
        "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text")
        for m in msgs
        if m["role"] == "assistant"
    ]


def _prompt(api: Api, sid: str, text: str) -> dict[str, Any]:
    r = api.post(f"/v1/sessions/{sid}/prompt", {"content": text}, expect=202)
    return r.json()["turn"]  # type: ignore[no-any-return]


def test_text_streams_into_a_message(oc_settings: Settings, model: MockModel) -> None:
    model.enqueue(mock_model.text("Hello from the mock model.", chunks=5))
    with _client(oc_settings) as client:
        api = _api(client)
        sid = api.session(agent="opencode")["id"]
        done = _wait(api, sid, _prompt(api, sid, "Say hello")["id"])
        assert done["status"] == "completed", done
        assert done["stopReason"] == "end_turn"
        assert _assistant_texts(api, sid) == ["Hello from the mock model."]
        assert done["usage"]["totalTokens"] > 0
        events = api.get(f"/v1/sessions/{sid}/events", params={"limit": 200}).json()["events"]
        deltas = [e["data"].get("delta") for e in events if e["type"] == "message.updated"]
        assert "".join(d.get("text", "") for d in deltas if d) == "Hello from the mock model."
        agent = api.get("/v1/agents/opencode").json()["agent"]
        assert agent["capabilities"]["loadSession"] is True
        # opencode announces its modes as a config option (category "mode")
        assert {"build", "plan"} <= {m["id"] for m in agent["modes"]}
        r = api.put(f"/v1/sessions/{sid}/mode", {"mode": "plan"}, expect=200)
        assert r.json()["session"]["mode"] == "plan"
        api.put(f"/v1/sessions/{sid}/mode", {"mode": "nope"}, expect=422)
        # the model saw the prompt
        assert any("Say hello" in json.dumps(r) for r in model.chat_requests)


def test_bash_asks_permission_and_its_file_is_saved(
    oc_settings: Settings, model: MockModel
) -> None:
    model.enqueue(
        mock_model.tool_call("bash", {"command": "echo hi > made.txt", "description": "make"}),
        mock_model.text("Made it."),
    )
    with _client(oc_settings) as client:
        api = _api(client)
        sid = api.session(agent="opencode")["id"]
        turn = _prompt(api, sid, "Make a file")
        deadline = time.monotonic() + 60
        pending: list[dict[str, Any]] = []
        while not pending and time.monotonic() < deadline:
            url = f"/v1/sessions/{sid}/approvals"
            pending = api.get(url, params={"status": "pending"}).json()["approvals"]
            time.sleep(0.1)
        assert pending, "opencode asked no permission"
        (approval,) = pending
        assert approval["kind"] == "agent_permission"
        assert approval["title"] == "echo hi > made.txt"
        assert approval["details"]["toolCall"]["kind"] == "execute"
        api.post(f"/v1/sessions/{sid}/approvals/{approval['id']}/grant", {}, expect=200)
        done = _wait(api, sid, turn["id"])
        assert done["status"] == "completed", done
        assert "made.txt" in done["filesChanged"]
        assert api.get(f"/v1/sessions/{sid}/files/made.txt").content == b"hi\n"
        files = api.get(
            f"/v1/sessions/{sid}/files", params={"at": done["checkpointId"], "recursive": "true"}
        ).json()["entries"]
        assert "made.txt" in [f["path"] for f in files]
        assert _assistant_texts(api, sid) == ["Made it."]


def test_cancel_stops_a_streaming_turn(oc_settings: Settings, model: MockModel) -> None:
    model.enqueue(mock_model.text("slow " * 40, chunks=40, delay=0.3))
    with _client(oc_settings) as client:
        api = _api(client)
        sid = api.session(agent="opencode")["id"]
        turn = _prompt(api, sid, "Talk slowly")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            t.strip() for t in _assistant_texts(api, sid)
        ):
            time.sleep(0.1)
        started = time.monotonic()
        assert api.post(f"/v1/sessions/{sid}/cancel", {}).json() == {"cancelled": [turn["id"]]}
        done = _wait(api, sid, turn["id"], seconds=30)
        assert done["status"] == "cancelled" and done["stopReason"] == "cancelled"
        assert time.monotonic() - started < 10  # opencode ended it; it was not stopped
        assert len(_assistant_texts(api, sid)[0]) < len("slow " * 40)


def test_a_second_turn_after_a_restart_continues_the_session(
    oc_settings: Settings, model: MockModel
) -> None:
    model.enqueue(mock_model.text("The secret word is PINEAPPLE."))
    with _client(oc_settings) as client:
        api = _api(client)
        sid = api.session(agent="opencode")["id"]
        assert _wait(api, sid, _prompt(api, sid, "Remember a word")["id"])["status"] == "completed"
        secret = api.key
    model.enqueue(mock_model.text("It was PINEAPPLE."))
    before = len(model.chat_requests)
    with _client(oc_settings) as client:  # a new server process state: the agent restarts
        api = _api(client, secret)
        done = _wait(api, sid, _prompt(api, sid, "What was the word?")["id"])
        assert done["status"] == "completed", done
        assert _assistant_texts(api, sid)[-1] == "It was PINEAPPLE."
        later = json.dumps(model.chat_requests[before:])
        assert "PINEAPPLE" in later  # session/load gave opencode its history back


def test_a_client_speaking_only_acp_gets_a_turn_with_a_permission_round_trip(
    oc_settings: Settings, model: MockModel
) -> None:
    """``/api/acp`` with the real opencode behind it: the client sends ACP methods, reads
    ACP notifications, and answers opencode's permission request — all checked against
    the ACP SDK's schema models."""
    import threading

    from acp import schema

    from tests.support.acp_http import AcpHttp

    model.enqueue(
        mock_model.tool_call("bash", {"command": "echo acp > acp.txt", "description": "make"}),
        mock_model.text("Done over ACP."),
    )
    with _client(oc_settings) as client:
        api = _api(client)
        acp = AcpHttp(client, api.key)
        new = schema.NewSessionResponse.model_validate(
            acp.result("session/new", {"cwd": "/x", "mcpServers": [], "provider": "opencode"})
        )
        stream = acp.stream(new.session_id)
        out: dict[str, Any] = {}
        prompt = {"sessionId": new.session_id, "prompt": [{"type": "text", "text": "Make it"}]}
        thread = threading.Thread(
            target=lambda: out.update(r=acp.call("session/prompt", prompt)), daemon=True
        )
        thread.start()
        seen = stream.until(lambda m: m.get("method") == "session/request_permission", 90)
        ask = seen[-1][1]
        request = schema.RequestPermissionRequest.model_validate(ask["params"])
        allow = next(o for o in request.options if o.kind == "allow_once")
        answer = schema.RequestPermissionResponse(
            outcome=schema.AllowedOutcome(outcome="selected", option_id=allow.option_id)
        )
        acp.post({"jsonrpc": "2.0", "id": ask["id"], "result": answer.model_dump(by_alias=True)})
        thread.join(timeout=90)
        assert schema.PromptResponse.model_validate(out["r"]["result"]).stop_reason == "end_turn"
        rest = stream.until(
            lambda m: "Done over ACP" in str(m.get("params", {}).get("update", {})), 30
        )
        stream.close()
        for _, m in seen + rest:
            if m.get("method") == "session/update":
                schema.SessionNotification.model_validate(m["params"])
        kinds = [
            m["params"]["update"]["sessionUpdate"]
            for _, m in seen + rest
            if "params" in m and m.get("method") == "session/update"
        ]
        assert "tool_call" in kinds and "agent_message_chunk" in kinds
        assert api.get(f"/v1/sessions/{new.session_id}/files/acp.txt").content == b"acp\n"
