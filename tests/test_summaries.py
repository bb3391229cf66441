"""Summaries: produced in the background on close, on demand by summarize, never twice."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.summaries import service as summaries
from sessiond.summaries.summarizer import DefaultSummarizer, SummaryInput, ToolUse
from tests.support.api import Api
from tests.support.clock import Clock


def _conversation(api: Api, sid: str) -> None:
    url = f"/v1/sessions/{sid}/messages"
    api.post(url, {"role": "user", "content": "Fix the login bug in auth.py"}, expect=201)
    parts = [
        {"type": "text", "text": "Looking."},
        {
            "type": "tool_call",
            "toolCallId": "a",
            "name": "read_file",
            "input": {},
            "status": "completed",
        },
        {"type": "tool_call", "toolCallId": "b", "name": "run_tests", "input": {}},
    ]
    api.post(url, {"role": "assistant", "parts": parts}, expect=201)
    result = [{"type": "tool_result", "toolCallId": "b", "output": "1 failed", "isError": True}]
    api.post(url, {"role": "tool", "parts": result, "toolCallId": "b"}, expect=201)
    api.post(url, {"role": "user", "content": "Also add a test"}, expect=201)
    api.post(url, {"role": "assistant", "content": "Fixed the token check; tests pass."})
    api.put(
        f"/v1/sessions/{sid}/tasks",
        {"tasks": [{"content": "fix bug", "status": "completed"}, {"content": "add test"}]},
        expect=200,
    )


def _wait_summary(api: Api, sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        session = api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]
        if session["summary"] is not None:
            return session
        assert time.monotonic() < deadline, "no summary 10 s after close"
        time.sleep(0.05)


def test_close_produces_a_summary_in_the_background(api: Api) -> None:
    sid = api.session(title="Login bug")["id"]
    _conversation(api, sid)
    closed = api.post(f"/v1/sessions/{sid}/close", expect=200).json()["session"]
    assert closed["status"] == "closed"
    session = _wait_summary(api, sid)
    summary = session["summary"]
    assert set(summary) == {"text", "files", "additions", "deletions", "by", "fallbackReason"}
    assert summary["by"] == "builtin" and summary["fallbackReason"] is None
    text = summary["text"]
    assert "Session: Login bug" in text
    assert "Asked: Fix the login bug in auth.py | Also add a test" in text
    assert "3 tool calls" not in text and "2 tool calls" in text
    assert "read_file x1 (1 ok)" in text and "run_tests x1 (1 error)" in text
    assert "Tasks: 1/2 completed; pending: add test" in text
    assert text.endswith("Ended: Fixed the token check; tests pass.")
    assert session["lifecycleVersion"] == closed["lifecycleVersion"]  # not a client field
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    done = [e for e in events if e["data"].get("changes") == ["summary"]]
    assert len(done) == 1 and done[0]["type"] == "session.updated"
    assert done[0]["data"]["session"]["summary"] == summary
    # summarize afterwards gives the same text (deterministic) and changes nothing
    again = api.post(f"/v1/sessions/{sid}/summarize", expect=200).json()["summary"]
    assert again == summary
    assert len(api.get(f"/v1/sessions/{sid}/events").json()["events"]) == len(events)


def test_summarize_does_not_close(client: TestClient, api: Api, tenant: Any, other: Any) -> None:
    sid = api.session()["id"]
    empty = api.post(f"/v1/sessions/{sid}/summarize", expect=200).json()["summary"]
    assert empty == {
        "text": "0 messages; nothing else to report.",
        "files": [],
        "additions": 0,
        "deletions": 0,
        "by": "builtin",
        "fallbackReason": None,
    }
    _conversation(api, sid)
    s = api.post(f"/v1/sessions/{sid}/summarize", expect=200).json()["summary"]
    assert "Asked: Fix the login bug" in s["text"]
    session = api.get(f"/v1/sessions/{sid}").json()["session"]
    assert session["status"] == "active" and session["summary"] is None
    Api(client, tenant.read).post(f"/v1/sessions/{sid}/summarize", expect=200)
    Api(client, other.admin).post(f"/v1/sessions/{sid}/summarize", expect=404, code="not_found")
    api.post("/v1/sessions/ses_nope/summarize", expect=404, code="not_found")


def test_a_due_summary_is_produced_once_by_the_sweep(client: TestClient, api: Api) -> None:
    """A close whose background task never ran (a crash) is picked up later; two producers
    racing store one summary and one event."""
    sid = api.session()["id"]
    ctx = client.app.state.ctx  # type: ignore[attr-defined]

    def crash_after_close(tx: Tx) -> None:  # what a close that never produced leaves
        tx.conn.execute(
            t.sessions.update()
            .where(t.sessions.c.id == sid)
            .values(status="closed", closed_at=tx.now, summary_due=tx.now - 60_000)
        )

    ctx.db.write_sync(crash_after_close)
    assert ctx.db.read_sync(summaries.due) == [(api_account(client, sid), sid)]
    data = ctx.db.read_sync(summaries.gather, api_account(client, sid), sid, scan=100)
    summary = DefaultSummarizer(100).summarize(data)
    assert ctx.db.write_sync(summaries.store, api_account(client, sid), sid, summary) is True
    assert ctx.db.write_sync(summaries.store, api_account(client, sid), sid, summary) is False
    assert ctx.db.read_sync(summaries.due) == []
    events = api.get(f"/v1/sessions/{sid}/events").json()["events"]
    assert [e["data"].get("changes") for e in events].count(["summary"]) == 1


@pytest.mark.sweeper
def test_sweep_loop_produces_overdue_summaries(client: TestClient, api: Api, clock: Clock) -> None:
    sid = api.session()["id"]
    ctx = client.app.state.ctx  # type: ignore[attr-defined]

    def closed_without_summary(tx: Tx) -> None:  # a close whose own task never ran
        tx.conn.execute(
            t.sessions.update()
            .where(t.sessions.c.id == sid)
            .values(status="closed", closed_at=tx.now, summary_due=tx.now)
        )

    ctx.db.write_sync(closed_without_summary)
    assert ctx.db.read_sync(summaries.due) == []  # within the grace the close has
    clock.advance(summaries.SWEEP_GRACE_MS / 1000)
    # the app's background sweep (every 0.05 s in a test marked sweeper) produces it
    _wait_summary(api, sid)


def api_account(client: TestClient, sid: str) -> str:
    def read(tx: Tx) -> str:
        q = sa.select(t.sessions.c.account_id).where(t.sessions.c.id == sid)
        return str(tx.conn.execute(q).scalar_one())

    return client.app.state.ctx.db.read_sync(read)  # type: ignore[attr-defined,no-any-return]


def test_default_summarizer_trims_and_bounds() -> None:
    data = SummaryInput(
        session_id="ses_x",
        title="t" * 1000,
        asked=["a" * 5000],
        tools=[ToolUse("grep", "ok")] * 300 + [ToolUse("edit", "pending")],
        tasks=[{"content": f"task {i}", "status": "pending"} for i in range(20)],
        last_assistant="done " * 1000,
        message_count=100_000,
        truncated=True,
    )
    s = DefaultSummarizer(400).summarize(data)
    assert len(s.text) <= 400 and s.text.endswith("…")
    full = DefaultSummarizer(100_000).summarize(data).text
    assert "301 tool calls in the scanned part of the history" in full
    assert "grep x300 (300 ok); edit x1 (1 pending)" in full
    assert "(+15 more)" in full
    assert len(full.splitlines()) == 5


def test_long_history_is_read_in_bounded_slices(client: TestClient, api: Api) -> None:
    """The summarizer reads the first page and the last ``scan`` messages, not everything."""
    sid = api.session()["id"]
    url = f"/v1/sessions/{sid}/messages"
    api.post(url, {"role": "user", "content": "the original ask"}, expect=201)
    for i in range(120):
        call = {
            "type": "tool_call",
            "toolCallId": f"c{i}",
            "name": "step",
            "input": {},
            "status": "completed",
        }
        api.post(url, {"role": "assistant", "parts": [call]}, expect=201)
    api.post(url, {"role": "assistant", "content": "the end"}, expect=201)
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    data = ctx.db.read_sync(summaries.gather, api_account(client, sid), sid, scan=20)
    assert data.asked == ["the original ask"]
    assert data.last_assistant == "the end"
    assert data.truncated and data.message_count == 122
    assert len(data.tools) == 49 + 19  # first page (minus the ask) + the last 20 minus "the end"


def test_summary_lists_the_changed_files(api: Api) -> None:
    sid = api.post(
        "/v1/sessions", {"source": {"files": {"keep.txt": "k\n", "edit.py": "a\n"}}}, expect=201
    ).json()["session"]["id"]
    api.put(f"/v1/sessions/{sid}/files/edit.py", content=b"a\nb\n", expect=200)
    api.put(f"/v1/sessions/{sid}/files/new/x.txt", content=b"x\n", expect=200)
    s = api.post(f"/v1/sessions/{sid}/summarize", expect=200).json()["summary"]
    assert (s["files"], s["additions"], s["deletions"]) == (["edit.py", "new/x.txt"], 2, 0)
    assert "Files: 2 changed (+2 -0): edit.py, new/x.txt" in s["text"]
