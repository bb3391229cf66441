"""A server killed (SIGKILL) during a turn: on the next start the turn is failed, what the
agent wrote is saved and checkpointed, and the queued turn runs — with a real
``sessiond serve`` process and the scripted agent."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agents import write_agents_file
from tests.support.servers import sandbox_work, start_server, stop_server

pytestmark = pytest.mark.slow


def _turn(c: httpx.Client, sid: str, turn_id: str, until: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        turn: dict[str, Any] = c.get(f"/v1/sessions/{sid}/turns/{turn_id}").json()["turn"]
        if turn["status"] in until or time.monotonic() > deadline:
            return turn
        time.sleep(0.1)


def test_sigkill_mid_turn(tmp_path: Path, database_url: str) -> None:
    write_agents_file(tmp_path)
    proc, url = start_server(tmp_path, database_url)
    try:
        key = (tmp_path / "admin.key").read_text().strip()
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        sid = c.post("/v1/sessions", json={"agent": "scripted"}).json()["session"]["id"]
        first = c.post(
            f"/v1/sessions/{sid}/prompt",
            json={"content": "say: working\nwrite: a.txt one\nsleep: 60"},
        ).json()["turn"]
        second = c.post(f"/v1/sessions/{sid}/prompt", json={"content": "say: after"}).json()["turn"]
        assert _turn(c, sid, first["id"], ("running",))["status"] == "running"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            directory = sandbox_work(tmp_path, sid)
            if directory is not None and (directory / "a.txt").exists():
                break
            time.sleep(0.05)
        assert directory is not None and (directory / "a.txt").exists()
        c.close()
    finally:
        stop_server(proc, signal.SIGKILL)

    proc, url = start_server(tmp_path, database_url)
    try:
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        failed = _turn(c, sid, first["id"], ("failed",))
        assert failed["status"] == "failed", failed
        assert failed["error"] == "the server stopped during this turn"
        assert failed["filesChanged"] == ["a.txt"] and failed["checkpointId"]
        assert c.get(f"/v1/sessions/{sid}/files/a.txt").content == b"one"
        done = _turn(c, sid, second["id"], ("completed", "failed"))
        assert done["status"] == "completed", done
        msgs = c.get(f"/v1/sessions/{sid}/messages").json()["messages"]
        assistant = [m for m in msgs if m["role"] == "assistant"]
        assert [m["status"] for m in assistant] == ["error", "complete"]
        texts = ["".join(p.get("text", "") for p in m["parts"]) for m in assistant]
        assert texts[0] in ("", "working") and texts[1] == "after"
        session = c.get(f"/v1/sessions/{sid}").json()["session"]
        assert session["activity"] == "idle"
        c.close()
    finally:
        stop_server(proc, signal.SIGTERM)


def _start_named(
    data_dir: Path, database_url: str, name: str
) -> tuple[subprocess.Popen[bytes], str]:
    """One of several instances: its own data dir (its own disk), its own name, a lease
    that expires 3 s after its owner stops renewing it."""
    quick = {"SESSIOND_TURN_STALE_SECONDS": "3", "SESSIOND_TURN_HEARTBEAT_SECONDS": "1"}
    return start_server(data_dir, database_url, name, **quick)


def _text_of(c: httpx.Client, sid: str, message_id: str) -> str:
    msg = c.get(f"/v1/sessions/{sid}/messages/{message_id}").json()["message"]
    return "".join(p.get("text", "") for p in msg["parts"] if p["type"] == "text")


def test_two_instances_one_owner_and_a_takeover_after_sigkill(
    tmp_path: Path, database_url: str, backend: str
) -> None:
    """Two real servers on one PostgreSQL, each with its own disk. A owns the session's
    agent; a prompt posted to B runs on A's agent. A is killed mid-turn: B fails that
    turn, takes the session over on the next one (the sandbox and the agent's HOME
    written again from the database) and the agent resumes its session (session/load)."""
    if backend != "postgresql":
        pytest.skip("instances share a database only on PostgreSQL")
    disk_a, disk_b = tmp_path / "a", tmp_path / "b"
    for disk in (disk_a, disk_b):
        disk.mkdir()
        write_agents_file(disk)
    a, url_a = _start_named(disk_a, database_url, "instance-a")
    b = None
    clients = contextlib.ExitStack()
    try:
        key = (disk_a / "admin.key").read_text().strip()
        b, url_b = _start_named(disk_b, database_url, "instance-b")
        auth = {"Authorization": f"Bearer {key}"}
        ca = clients.enter_context(httpx.Client(base_url=url_a, headers=auth, timeout=10))
        cb = clients.enter_context(httpx.Client(base_url=url_b, headers=auth, timeout=10))
        sid = ca.post("/v1/sessions", json={"agent": "scripted"}).json()["session"]["id"]
        one = ca.post(f"/v1/sessions/{sid}/prompt", json={"content": "recall"}).json()["turn"]
        assert _turn(ca, sid, one["id"], ("completed", "failed"))["status"] == "completed"
        assert sandbox_work(disk_a, sid) is not None
        # Posted to B, run by A's agent (the same ACP session: its second prompt).
        two = cb.post(f"/v1/sessions/{sid}/prompt", json={"content": "recall"}).json()["turn"]
        done = _turn(cb, sid, two["id"], ("completed", "failed"))
        assert done["status"] == "completed", done
        assert _text_of(cb, sid, done["assistantMessageId"]) == "prompts=2"
        assert sandbox_work(disk_b, sid) is None
        # A dies in the middle of a turn.
        three = cb.post(
            f"/v1/sessions/{sid}/prompt", json={"content": "say: working\nsleep: 60"}
        ).json()["turn"]
        assert _turn(cb, sid, three["id"], ("running",))["status"] == "running"
        a.kill()
        a.wait()
        four = cb.post(f"/v1/sessions/{sid}/prompt", json={"content": "recall"}).json()["turn"]
        failed = _turn(cb, sid, three["id"], ("failed",))
        assert failed["status"] == "failed" and "stopped" in (failed["error"] or ""), failed
        done = _turn(cb, sid, four["id"], ("completed", "failed"))
        assert done["status"] == "completed", done
        # B's agent loaded the ACP session from the HOME kept at the end of turn two.
        assert _text_of(cb, sid, done["assistantMessageId"]) == "prompts=3"
        assert sandbox_work(disk_b, sid) is not None
        session = cb.get(f"/v1/sessions/{sid}").json()["session"]
        assert session["sandbox"]["state"] == "active"
    finally:
        clients.close()
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                stop_server(proc, signal.SIGTERM)
