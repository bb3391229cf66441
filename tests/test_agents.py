"""Agents end to end: the scripted ACP agent (a real process, the ACP SDK on both sides)
run by the server through prompts, turns, approvals, files and checkpoints."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessiond.agents import turns
from sessiond.app import create_app
from sessiond.auth import service as auth
from sessiond.settings import Settings
from tests.support.api import Api


def _turn(api: Api, sid: str, script: str, **body: Any) -> dict[str, Any]:
    r = api.post(f"/v1/sessions/{sid}/prompt", {"content": script, **body}, expect=202)
    return r.json()["turn"]  # type: ignore[no-any-return]


def _wait(api: Api, sid: str, turn_id: str, seconds: int = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        turn = api.get(f"/v1/sessions/{sid}/turns/{turn_id}", params={"wait": 5}).json()["turn"]
        if turn["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return turn  # type: ignore[no-any-return]


def _messages(api: Api, sid: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/sessions/{sid}/messages", params={"limit": 200}).json()["messages"]  # type: ignore[no-any-return]


def _pending(api: Api, sid: str) -> list[dict[str, Any]]:
    url = f"/v1/sessions/{sid}/approvals"
    return api.get(url, params={"status": "pending"}).json()["approvals"]  # type: ignore[no-any-return]


def _await_pending(api: Api, sid: str) -> list[dict[str, Any]]:
    """The session's pending approvals, once there is one (at most 20 s)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if pending := _pending(api, sid):
            return pending
        time.sleep(0.05)
    raise AssertionError("no approval was requested")


def _events(api: Api, sid: str) -> list[dict[str, Any]]:
    url = f"/v1/sessions/{sid}/events"
    return api.get(url, params={"limit": 200}).json()["events"]  # type: ignore[no-any-return]


def _text(message: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in message["parts"] if p["type"] == "text")


def test_agents_are_listed(api: Api, client: TestClient, tenant: Any) -> None:
    body = api.get("/v1/agents").json()
    names = {a["name"]: a for a in body["agents"]}
    assert set(names) == {"scripted", "forgetful", "permissive", "missing", "silent"}
    assert names["scripted"]["available"] is True and names["scripted"]["error"] is None
    assert names["missing"]["available"] is False
    assert "not found" in names["missing"]["error"]
    assert "command" not in names["scripted"]  # a write key sees no command line
    admin = tenant.api(client, "admin").get("/v1/agents/scripted").json()["agent"]
    assert admin["command"][-1].endswith("scripted_agent.py")
    api.get("/v1/agents/nope", expect=404, code="not_found")


def test_unknown_agent_is_422(api: Api) -> None:
    api.post("/v1/sessions", {"agent": "nope"}, expect=422, code="validation_error")
    sid = api.session()["id"]
    api.patch(f"/v1/sessions/{sid}", {"agent": "nope"}, expect=422, code="validation_error")


def test_prompt_without_agent_is_409(api: Api) -> None:
    sid = api.session()["id"]
    api.post(f"/v1/sessions/{sid}/prompt", {"content": "hi"}, expect=409, code="no_agent")


def test_a_turn_streams_into_one_assistant_message(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    turn = _turn(
        api, sid, "think: hmm\nsay: hello there world\ntool: t1 run tests\nusage: 10 5 0.25"
    )
    assert turn["status"] == "queued" and turn["userMessageId"]
    done = _wait(api, sid, turn["id"])
    assert done["status"] == "completed", done
    assert done["stopReason"] == "end_turn"
    assert done["usage"] == {
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 15,
        "costUsd": 0.25,
    }
    msgs = _messages(api, sid)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assistant = msgs[1]
    assert assistant["id"] == done["assistantMessageId"]
    assert assistant["status"] == "complete"
    assert _text(assistant) == "hello there world"
    kinds = [p["type"] for p in assistant["parts"]]
    assert kinds == ["reasoning", "text", "tool_call"]
    tool = assistant["parts"][2]
    assert (
        tool["toolCallId"] == "t1" and tool["status"] == "completed" and tool["name"] == "run tests"
    )
    session = api.get(f"/v1/sessions/{sid}").json()["session"]
    assert session["activity"] == "idle"
    assert session["usage"]["turns"] == 1 and session["usage"]["totalTokens"] == 15
    events = [
        e["type"]
        for e in api.get(f"/v1/sessions/{sid}/events", params={"limit": 200}).json()["events"]
    ]
    assert (
        events.index("turn.queued") < events.index("turn.started") < events.index("turn.completed")
    )
    deltas = [
        e["data"].get("delta")
        for e in api.get(f"/v1/sessions/{sid}/events", params={"limit": 200}).json()["events"]
        if e["type"] == "message.updated"
    ]
    assert "".join(d.get("text", "") for d in deltas if d) == "hello there world"


def test_files_the_agent_writes_are_saved_and_checkpointed(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    api.put(f"/v1/sessions/{sid}/files/keep.txt", content=b"old\n", expect=200)
    api.put(f"/v1/sessions/{sid}/files/gone.txt", content=b"bye\n", expect=200)
    script = "write: src/app.py print(1)\\n\nfswrite: notes.md # hi\ndelete: gone.txt\nsay: done"
    done = _wait(api, sid, _turn(api, sid, script)["id"])
    assert done["status"] == "completed", done
    assert sorted(done["filesChanged"]) == ["gone.txt", "notes.md", "src/app.py"]
    assert api.get(f"/v1/sessions/{sid}/files/src/app.py").content == b"print(1)\n"
    assert api.get(f"/v1/sessions/{sid}/files/notes.md").content == b"# hi"
    api.get(f"/v1/sessions/{sid}/files/gone.txt", expect=404)
    assert done["checkpointId"]
    # Revert to the prompt: the files as they were before the turn.
    api.post(f"/v1/sessions/{sid}/revert", {"messageId": done["userMessageId"]}, expect=200)
    assert api.get(f"/v1/sessions/{sid}/files/gone.txt").content == b"bye\n"
    api.get(f"/v1/sessions/{sid}/files/src/app.py", expect=404)


def test_fs_paths_outside_the_directory_are_refused(api: Api, settings: Any) -> None:
    sid = api.session(agent="scripted")["id"]
    outside = settings.data_dir / "outside.txt"
    script = (
        f"fswrite: {outside} x\nfswrite: ../escape.txt x\nfsread: /etc/hostname\n"
        "fswrite: .git/config x\nsay: end"
    )
    done = _wait(api, sid, _turn(api, sid, script)["id"])
    assert done["status"] == "completed", done
    text = _text(_messages(api, sid)[1])
    assert text.count("fswrite error") == 3 and "fsread error" in text, text
    assert not outside.exists()
    assert not (settings.data_dir / "sandboxes" / sid / "escape.txt").exists()
    assert not (settings.data_dir / "sandboxes" / "escape.txt").exists()
    assert done["filesChanged"] == []


def test_permission_granted_through_the_approvals_api(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    turn = _turn(api, sid, "ask: t1 execute rm -rf build\nsay: after")
    approval = _await_pending(api, sid)[0]
    assert approval["kind"] == "agent_permission" and approval["title"] == "rm -rf build"
    assert approval["details"]["turnId"] == turn["id"]
    assert [o["kind"] for o in approval["options"]] == [
        "allow_once",
        "allow_always",
        "reject_once",
        "reject_always",
    ]
    api.post(f"/v1/sessions/{sid}/approvals/{approval['id']}/grant", {}, expect=200)
    done = _wait(api, sid, turn["id"])
    assert done["status"] == "completed"
    assert "granted:once" in _text(_messages(api, sid)[1])


def test_always_is_remembered_and_policy_decisions_are_recorded(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    turn = _turn(api, sid, "ask: t1 execute make\nask: t2 execute make again")
    first = _await_pending(api, sid)[0]
    api.post(
        f"/v1/sessions/{sid}/approvals/{first['id']}/grant", {"optionId": "always"}, expect=200
    )
    done = _wait(api, sid, turn["id"])
    assert done["status"] == "completed"
    text = _text(_messages(api, sid)[1])
    assert "granted:always" in text and text.count("granted:always") == 2
    all_ = api.get(f"/v1/sessions/{sid}/approvals").json()["approvals"]
    assert [a["decidedBy"] for a in all_][1] == "policy"
    assert all_[1]["status"] == "granted" and all_[1]["optionId"] == "always"


def test_allow_all_policy_decides_without_asking(api: Api) -> None:
    sid = api.session(agent="permissive")["id"]
    done = _wait(api, sid, _turn(api, sid, "ask: t1 edit change a file")["id"])
    assert done["status"] == "completed"
    assert "granted:once" in _text(_messages(api, sid)[1])
    (approval,) = api.get(f"/v1/sessions/{sid}/approvals").json()["approvals"]
    assert approval["decidedBy"] == "policy"


def test_cancel_ends_the_running_turn_and_its_approvals(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    turn = _turn(api, sid, "say: before\nask: t1 execute slow thing\nsay: never")
    _await_pending(api, sid)
    r = api.post(f"/v1/sessions/{sid}/cancel", {}, expect=200).json()
    assert r["cancelled"] == [turn["id"]]
    done = _wait(api, sid, turn["id"])
    assert done["status"] == "cancelled" and done["stopReason"] == "cancelled"
    (approval,) = api.get(f"/v1/sessions/{sid}/approvals").json()["approvals"]
    assert approval["status"] == "cancelled"
    api.post(
        f"/v1/sessions/{sid}/approvals/{approval['id']}/grant",
        {},
        expect=409,
        code="invalid_transition",
    )
    assert api.post(f"/v1/sessions/{sid}/cancel", {}, expect=200).json() == {"cancelled": []}


def test_turns_queue_in_order_and_reject_when_busy(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    first = _turn(api, sid, "sleep: 0.5\nsay: one")
    second = _turn(api, sid, "say: two")
    api.post(
        f"/v1/sessions/{sid}/prompt",
        {"content": "x", "multitask": "reject"},
        expect=409,
        code="session_busy",
    )
    assert _wait(api, sid, second["id"])["status"] == "completed"
    assert _wait(api, sid, first["id"])["status"] == "completed"
    texts = [_text(m) for m in _messages(api, sid) if m["role"] == "assistant"]
    assert texts == ["one", "two"]
    listed = api.get(f"/v1/sessions/{sid}/turns").json()["turns"]
    assert [t["id"] for t in listed] == [second["id"], first["id"]]


def test_a_crashing_agent_fails_its_turn_with_its_stderr(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    done = _wait(api, sid, _turn(api, sid, "say: partial\nwrite: saved.txt kept\ncrash")["id"])
    assert done["status"] == "failed"
    assert "exited with status 3" in done["error"] and "crashing as asked" in done["error"]
    assistant = _messages(api, sid)[1]
    assert assistant["status"] == "error"
    assert api.get(f"/v1/sessions/{sid}/files/saved.txt").content == b"kept"
    # The next turn starts a new process.
    assert _wait(api, sid, _turn(api, sid, "say: again")["id"])["status"] == "completed"


def test_garbage_on_stdout_fails_the_turn(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    done = _wait(api, sid, _turn(api, sid, "garbage\nsay: x")["id"])
    assert done["status"] == "failed" and "broke the protocol" in done["error"]


def test_a_missing_agent_fails_the_turn(api: Api) -> None:
    sid = api.session(agent="missing")["id"]
    done = _wait(api, sid, _turn(api, sid, "say: x")["id"])
    assert done["status"] == "failed" and "not found" in done["error"]


def test_plan_replaces_the_task_list(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    _wait(api, sid, _turn(api, sid, "plan: read | write | test")["id"])
    tasks = api.get(f"/v1/sessions/{sid}/tasks").json()["tasks"]
    assert [t["content"] for t in tasks] == ["read", "write", "test"]


def test_terminal_runs_in_the_directory(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    api.put(f"/v1/sessions/{sid}/files/here.txt", content=b"x", expect=200)
    done = _wait(api, sid, _turn(api, sid, "term: ls\nterm: false")["id"])
    text = _text(_messages(api, sid)[1])
    assert done["status"] == "completed"
    assert "exit=0 output=here.txt" in text and "exit=1" in text, text


def test_api_writes_during_a_turn_reach_the_directory(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    first = _turn(api, sid, "say: warm")
    _wait(api, sid, first["id"])
    api.put(f"/v1/sessions/{sid}/files/from-api.txt", content=b"api\n", expect=200)
    time.sleep(0.3)
    done = _wait(api, sid, _turn(api, sid, "fsread: from-api.txt")["id"])
    assert done["status"] == "completed"
    assert _text(_messages(api, sid)[3]) == "api\n"
    # A delete and a write in a new directory through the API reach it too.
    api.delete(f"/v1/sessions/{sid}/files/from-api.txt", expect=204)
    api.put(f"/v1/sessions/{sid}/files/deep/new.txt", content=b"new\n", expect=200)
    time.sleep(0.3)
    done = _wait(api, sid, _turn(api, sid, "fsread: from-api.txt\nfsread: deep/new.txt")["id"])
    assert done["status"] == "completed"
    text = _text(_messages(api, sid)[5])
    assert text.startswith("fsread error") and text.endswith("new\n"), text


@pytest.mark.parametrize("agent", ["scripted", "forgetful"])
def test_session_load_keeps_the_agents_memory(api: Api, client: TestClient, agent: str) -> None:
    """A second process (the first stopped) loads the ACP session when it can."""
    sid = api.session(agent=agent)["id"]
    _wait(api, sid, _turn(api, sid, "recall")["id"])
    runner = client.app.state.ctx.runner  # type: ignore[attr-defined]
    client.portal.call(functools.partial(runner.stop_session, sid, remove=False))  # type: ignore[union-attr]
    _wait(api, sid, _turn(api, sid, "recall")["id"])
    texts = [_text(m) for m in _messages(api, sid) if m["role"] == "assistant"]
    assert texts == ["prompts=1", "prompts=2" if agent == "scripted" else "prompts=1"]


def _running(api: Api, sid: str, turn_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        turn = api.get(f"/v1/sessions/{sid}/turns/{turn_id}").json()["turn"]
        last = _messages(api, sid)[-1]
        if turn["status"] == "running" and last["role"] == "assistant" and _text(last):
            return
        time.sleep(0.05)
    raise AssertionError("the turn did not start streaming")


def test_a_cancel_written_by_another_instance_reaches_the_turn(
    api: Api, client: TestClient, tenant: Any
) -> None:
    """Only the row says so (as when another instance took the cancel): the runner sees it."""
    sid = api.session(agent="scripted")["id"]
    turn = _turn(api, sid, "say: started\nsleep: 30\nsay: never")
    _running(api, sid, turn["id"])
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    running, _ = db.write_sync(turns.request_cancel, tenant.account_id, sid, queued=False)
    assert running == [turn["id"]]
    done = _wait(api, sid, turn["id"], seconds=10)
    assert done["status"] == "cancelled"


def test_closing_or_deleting_a_session_stops_its_agent(api: Api, settings: Any) -> None:
    closing = api.session(agent="scripted")["id"]
    _wait(api, closing, _turn(api, closing, "write: x.txt 1")["id"])
    directory = settings.data_dir / "sandboxes" / closing
    assert directory.is_dir()
    api.post(f"/v1/sessions/{closing}/close", {}, expect=200)
    deadline = time.monotonic() + 10
    while directory.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not directory.exists()
    # Deleted while a turn runs: the turn goes with it, nothing is left behind.
    doomed = api.session(agent="scripted")["id"]
    turn = _turn(api, doomed, "say: hi\nsleep: 30")
    _running(api, doomed, turn["id"])
    api.delete(f"/v1/sessions/{doomed}", expect=204)
    directory = settings.data_dir / "sandboxes" / doomed
    deadline = time.monotonic() + 10
    while directory.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not directory.exists()
    api.get(f"/v1/sessions/{doomed}/turns/{turn['id']}", expect=404)
    # The server is still fine: a new session runs a turn.
    sid = api.session(agent="scripted")["id"]
    assert _wait(api, sid, _turn(api, sid, "say: ok")["id"])["status"] == "completed"


def test_modes_announced_by_the_agent(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    _wait(api, sid, _turn(api, sid, "say: hi")["id"])
    agent = api.get("/v1/agents/scripted").json()["agent"]
    assert [m["id"] for m in agent["modes"]] == ["build", "plan"]
    assert agent["capabilities"]["loadSession"] is True
    r = api.put(f"/v1/sessions/{sid}/mode", {"mode": "plan"}, expect=200)
    assert r.json()["session"]["mode"] == "plan"
    api.put(f"/v1/sessions/{sid}/mode", {"mode": "yolo"}, expect=422, code="validation_error")
    # The agent reports a mode change: the session follows.
    _wait(api, sid, _turn(api, sid, "mode: build")["id"])
    assert api.get(f"/v1/sessions/{sid}").json()["session"]["mode"] == "build"


def test_an_agent_that_never_answers_initialize_fails_the_turn(settings: Settings) -> None:
    quick = settings.model_copy(update={"agent_start_timeout_seconds": 2.0})
    with TestClient(create_app(quick), raise_server_exceptions=False) as client:
        secret = client.app.state.ctx.db.write_sync(auth.bootstrap)  # type: ignore[attr-defined]
        api = Api(client, secret)
        sid = api.session(agent="silent")["id"]
        done = _wait(api, sid, _turn(api, sid, "say: x")["id"])
        assert done["status"] == "failed" and "did not start within 2 s" in done["error"]
        assert _messages(api, sid)[1]["status"] == "error"


def test_decisions_and_cancels_on_another_instance_reach_the_agent(
    backend: str, settings: Any
) -> None:
    """Two instances on one PostgreSQL database: the turn runs on A; a grant and a cancel
    posted to B reach A's agent (NOTIFY, and the row), and A's turns are not B's to fail."""
    if backend != "postgresql":
        pytest.skip("instances share a database only on PostgreSQL")
    import httpx

    from sessiond.auth import service as auth
    from tests.support.live import live_server

    a_settings = settings.model_copy(update={"instance_id": "a", "event_poll_seconds": 30.0})
    b_settings = settings.model_copy(update={"instance_id": "b", "event_poll_seconds": 30.0})
    with live_server(a_settings) as a:
        key = str(a.app.state.ctx.db.write_sync(auth.bootstrap))
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=a.url, headers=headers, timeout=30) as ca:
            sid = ca.post("/v1/sessions", json={"agent": "scripted"}).json()["session"]["id"]
            script = "ask: t1 execute deploy\nsay: done\nsleep: 30\nsay: never"
            turn = ca.post(f"/v1/sessions/{sid}/prompt", json={"content": script}).json()["turn"]
            with (
                live_server(b_settings) as b,
                httpx.Client(base_url=b.url, headers=headers, timeout=30) as cb,
            ):
                deadline = time.monotonic() + 20
                pending: list[dict[str, Any]] = []
                while not pending and time.monotonic() < deadline:
                    url = f"/v1/sessions/{sid}/approvals"
                    pending = cb.get(url, params={"status": "pending"}).json()["approvals"]
                    time.sleep(0.05)
                assert pending, "no approval was requested"
                granted_at = time.monotonic()
                url = f"/v1/sessions/{sid}/approvals/{pending[0]['id']}/grant"
                assert cb.post(url, json={}).status_code == 200
                deadline = time.monotonic() + 10
                text = ""
                while "done" not in text and time.monotonic() < deadline:
                    msgs = cb.get(f"/v1/sessions/{sid}/messages").json()["messages"]
                    text = "".join(p.get("text", "") for p in msgs[-1]["parts"])
                    time.sleep(0.05)
                assert "granted:once" in text and "done" in text, text
                assert time.monotonic() - granted_at < 5  # woken by NOTIFY, not the 30 s poll
                running = cb.get(f"/v1/sessions/{sid}/turns/{turn['id']}").json()["turn"]
                assert running["status"] == "running"  # B did not take A's turn for dead
                assert cb.post(f"/v1/sessions/{sid}/cancel", json={}).json() == {
                    "cancelled": [turn["id"]]
                }
                r = cb.get(f"/v1/sessions/{sid}/turns/{turn['id']}", params={"wait": 10})
                assert r.json()["turn"]["status"] == "cancelled"


def test_a_turn_of_an_instance_that_is_gone_is_failed_once_its_heartbeat_stops(
    settings: Any,
) -> None:
    """Instance A stops mid-turn (its turn stays ``running``, owned by A). Instance B does
    not fail it at its start — A could still be alive — but after ``turn_stale_seconds``
    without A's heartbeat it does, and runs the turn queued behind it."""
    from sessiond.app import create_app
    from sessiond.auth import service as auth

    quick = {"turn_stale_seconds": 3.0, "turn_heartbeat_seconds": 1.0}
    a = settings.model_copy(update={"instance_id": "a", **quick})
    with TestClient(create_app(a)) as client:
        api = Api(client, str(client.app.state.ctx.db.write_sync(auth.bootstrap)))  # type: ignore[attr-defined]
        sid = api.session(agent="scripted")["id"]
        first = _turn(api, sid, "say: started\nsleep: 30")
        _running(api, sid, first["id"])
        second = _turn(api, sid, "say: next")
    b = settings.model_copy(update={"instance_id": "b", "agent_idle_seconds": 1.0, **quick})
    with TestClient(create_app(b)) as client:
        api = Api(client, api.key)
        assert api.get(f"/v1/sessions/{sid}/turns/{first['id']}").json()["turn"]["status"] == (
            "running"
        )
        failed = _wait(api, sid, first["id"], seconds=15)
        assert failed["status"] == "failed" and failed["error"] == turns.STOPPED_BY_RESTART
        assert _wait(api, sid, second["id"], seconds=15)["status"] == "completed"


def test_malformed_updates_do_not_break_the_message(api: Api) -> None:
    """Updates are untrusted JSON: fields of the wrong type are not stored as parts."""
    sid = api.session(agent="scripted")["id"]
    bad = [
        '{"sessionUpdate": "tool_call", "toolCallId": 5, "title": "x"}',
        '{"sessionUpdate": "tool_call", "toolCallId": "t9", "title": 7, "status": ["x"]}',
        '{"sessionUpdate": "plan", "entries": "not a list"}',
        '{"sessionUpdate": "usage_update", "used": 1, "size": 2, "cost": {"amount": "lots"}}',
        '{"sessionUpdate": "agent_message_chunk", "content": 42}',
        '{"sessionUpdate": "something_new", "x": 1}',
    ]
    script = "say: before\n" + "\n".join(f"raw: {b}" for b in bad) + "\nsay: after"
    done = _wait(api, sid, _turn(api, sid, script)["id"])
    assert done["status"] == "completed", done
    assistant = _messages(api, sid)[1]
    assert _text(assistant) == "beforeafter"
    (tool,) = [p for p in assistant["parts"] if p["type"] == "tool_call"]
    assert tool["toolCallId"] == "t9" and tool["name"] == "tool" and tool["status"] == "pending"
    kinds = [
        e["data"]["update"]["sessionUpdate"]
        for e in _events(api, sid)
        if e["type"] == "agent.update"
    ]
    assert kinds.count("tool_call") == 1 and "something_new" in kinds
    assert api.get(f"/v1/sessions/{sid}/tasks").json()["tasks"] == []
