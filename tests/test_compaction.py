"""Compaction (docs/design/compaction.md): ``POST /v1/sessions/{id}/compact`` makes the
conversation (summary + last N) with the full history still reachable."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sessiond.app import create_app
from sessiond.auth import service as auth
from sessiond.conversation import path as P
from sessiond.settings import Settings
from sessiond.summaries.summarizer import DefaultSummarizer, Summary, SummaryInput
from tests.support.api import Api, make_tenant
from tests.support.clock import Clock

ROLES = ("user", "assistant", "tool", "assistant")


def fill(api: Api, sid: str, n: int, start: int = 1) -> list[dict[str, Any]]:
    """``n`` messages ``m<i>`` in a cycle of roles (user first)."""
    out = []
    for i in range(start, start + n):
        role = ROLES[(i - 1) % len(ROLES)]
        body: dict[str, Any] = {"role": role, "content": f"m{i}"}
        if role == "tool":
            body["toolCallId"] = f"c{i}"
        out.append(api.post(f"/v1/sessions/{sid}/messages", body, expect=201).json()["message"])
    return out


def listed(api: Api, sid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        body = api.get(f"/v1/sessions/{sid}/messages", params=params, expect=200).json()
        out += body["messages"]
        cursor = body["nextCursor"]
        if cursor is None:
            return out


def text(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def texts(api: Api, sid: str) -> list[str]:
    return [text(m) for m in listed(api, sid)]


def session(api: Api, sid: str) -> dict[str, Any]:
    return api.get(f"/v1/sessions/{sid}", expect=200).json()["session"]  # type: ignore[no-any-return]


def events(api: Api, sid: str, after: int = 0) -> list[dict[str, Any]]:
    url = f"/v1/sessions/{sid}/events"
    return api.get(url, params={"after": after, "limit": 200}).json()["events"]  # type: ignore[no-any-return]


def compact(api: Api, sid: str, body: Any = None, **kw: Any) -> dict[str, Any]:
    r = api.post(f"/v1/sessions/{sid}/compact", body, **{"expect": 200, **kw})
    return r.json()  # type: ignore[no-any-return]


def check_path(messages: list[dict[str, Any]], sid: str) -> None:
    """seq 1..n, each parentId the message before it, all read through ``sid``."""
    parent = None
    for i, m in enumerate(messages, start=1):
        assert m["seq"] == i and m["parentId"] == parent and m["sessionId"] == sid, m
        parent = m["id"]


def test_path_compact_matches_a_list_model() -> None:
    """``path.compact`` against a plain list of (branch, bseq), mixed with appends,
    removes and cuts: the summary at seq 1, the kept ones after it, appends on its branch."""
    rng = random.Random(11)
    path = P.empty()
    model: list[tuple[str, int]] = []
    for step in range(3000):
        op = rng.random()
        if op < 0.6 or not model:
            branch = path["head"] or f"b{step}"
            path, bseq, seq = P.append(path, branch)
            model.append((branch, bseq))
            assert seq == len(model)
        elif op < 0.75:
            i = rng.randrange(len(model))
            path = P.remove(path, i + 1)
            del model[i]
        elif op < 0.85:
            k = rng.randrange(len(model) + 1)
            path = P.cut(path, k)
            model = model[:k]
        else:
            k = rng.randrange(len(model) + 1)
            path = P.compact(path, k, f"s{step}")
            model = [(f"s{step}", 1), *model[k:]]
            assert path["head"] == f"s{step}" and path["next"] == 2
        assert P.count(path) == len(model)
        for s, (b, q) in enumerate(model, 1):
            assert P.at_seq(path, s) == (b, q)
            assert P.locate(path, b, q) == s
    with pytest.raises(ValueError):
        P.compact(path, P.count(path) + 1, "x")


def test_compact_keeps_the_last_n_behind_a_summary(api: Api) -> None:
    sid = api.session(title="long")["id"]
    original = fill(api, sid, 50)
    before = session(api, sid)
    cursor = events(api, sid)[-1]["id"]

    out = compact(api, sid, {"keepLast": 10})

    assert out["compactedCount"] == 40
    summary = out["message"]
    assert summary["role"] == "system" and summary["seq"] == 1 and summary["parentId"] is None
    assert summary["status"] == "complete" and summary["sessionId"] == sid
    assert text(summary).startswith("Summary of the 40 earlier messages")
    assert "m1" in text(summary)  # the default summarizer names what was asked first
    meta = summary["metadata"]["compaction"]
    assert meta["compactedCount"] == 40 and meta["keepLast"] == 10
    got = listed(api, sid)
    check_path(got, sid)
    assert [m["id"] for m in got] == [summary["id"]] + [m["id"] for m in original[40:]]
    assert [m["role"] for m in got[1:]] == [m["role"] for m in original[40:]]
    assert [text(m) for m in got[1:]] == [f"m{i}" for i in range(41, 51)]
    assert got[1]["toolCallId"] is None and got[3]["toolCallId"] == "c43"
    after = session(api, sid)
    assert after["messageCount"] == 11 and after["compactions"] == 1
    # a counter: the lifecycle version does not move
    assert after["lifecycleVersion"] == before["lifecycleVersion"]
    # the kept messages read one by one, with their new seqs and parents
    one = api.get(f"/v1/sessions/{sid}/messages/{original[40]['id']}", expect=200).json()
    assert one["message"]["seq"] == 2 and one["message"]["parentId"] == summary["id"]
    # a compacted message is no longer on the conversation
    api.get(f"/v1/sessions/{sid}/messages/{original[0]['id']}", expect=404, code="not_found")

    # the events of the compaction, in order, in one transaction
    new = events(api, sid, cursor)
    assert [e["type"] for e in new] == [
        "checkpoint.created",
        "message.created",
        "session.compacted",
    ]
    checkpoint = new[0]["data"]["checkpoint"]
    assert checkpoint["messageId"] == original[-1]["id"] and checkpoint["auto"] is True
    assert new[1]["data"]["message"] == summary
    assert new[2]["data"] == {
        "messageId": summary["id"],
        "compactedCount": 40,
        "keepLast": 10,
        "checkpointId": checkpoint["id"],
        "messageCount": 11,
        "compactions": 1,
    }
    assert meta["checkpointId"] == checkpoint["id"]

    # appending goes on after the kept ones
    more = fill(api, sid, 2, start=51)
    assert [m["seq"] for m in more] == [12, 13] and more[0]["parentId"] == original[-1]["id"]
    got = listed(api, sid)
    check_path(got, sid)
    assert [text(m) for m in got[1:]] == [f"m{i}" for i in range(41, 53)]

    # a second compaction: the first summary is carried into the new one
    out2 = compact(api, sid, {"keepLast": 3})
    assert out2["compactedCount"] == 10
    assert "Earlier: Summary of the 40 earlier messages" in text(out2["message"])
    got = listed(api, sid)
    check_path(got, sid)
    assert [text(m) for m in got[1:]] == ["m50", "m51", "m52"]
    assert session(api, sid)["compactions"] == 2
    assert session(api, sid)["messageCount"] == 4


def test_the_full_history_comes_back(api: Api) -> None:
    sid = api.session()["id"]
    original = fill(api, sid, 50)
    first = compact(api, sid, {"keepLast": 10})
    fill(api, sid, 1, start=51)
    checkpoint_id = first["message"]["metadata"]["compaction"]["checkpointId"]

    # restore the checkpoint taken before the compaction
    r = api.post(f"/v1/sessions/{sid}/restore", {"checkpointId": checkpoint_id}, expect=200)
    assert r.json()["session"]["messageCount"] == 50
    got = listed(api, sid)
    check_path(got, sid)
    assert [m["id"] for m in got] == [m["id"] for m in original]
    assert session(api, sid)["compactions"] == 1  # compactions performed, not undone

    # undo the restore: compacted again (summary + 10 + the one appended after)
    undo = r.json()["undoCheckpointId"]
    api.post(f"/v1/sessions/{sid}/restore", {"checkpointId": undo}, expect=200)
    assert texts(api, sid)[1:] == [f"m{i}" for i in range(41, 52)]

    # revert the summary message: the state just before it is the full history
    summary_id = first["message"]["id"]
    r = api.post(f"/v1/sessions/{sid}/revert", {"messageId": summary_id}, expect=200)
    assert r.json()["session"]["messageCount"] == 50
    assert [m["id"] for m in listed(api, sid)] == [m["id"] for m in original]
    # and unrevert compacts it again
    api.post(f"/v1/sessions/{sid}/unrevert", expect=200)
    assert listed(api, sid)[0]["id"] == summary_id
    assert len(listed(api, sid)) == 12

    # reverting a kept message cuts the compacted path as usual
    kept = listed(api, sid)[3]
    api.post(f"/v1/sessions/{sid}/revert", {"messageId": kept["id"]}, expect=200)
    assert [m["id"] for m in listed(api, sid)] == [summary_id] + [m["id"] for m in original[40:42]]


def test_compaction_on_forks_is_private(api: Api) -> None:
    parent = api.session()["id"]
    fill(api, parent, 30)
    child = api.post(f"/v1/sessions/{parent}/fork", {}, expect=201).json()["session"]["id"]
    parent_before = listed(api, parent)
    child_before = listed(api, child)
    assert [m["id"] for m in child_before] == [m["id"] for m in parent_before]

    # the child compacts: the parent sees nothing of it
    out = compact(api, child, {"keepLast": 5})
    assert out["compactedCount"] == 25
    assert listed(api, parent) == parent_before
    assert session(api, parent)["compactions"] == 0
    got = listed(api, child)
    check_path(got, child)
    assert [m["id"] for m in got[1:]] == [m["id"] for m in parent_before[25:]]
    # both go on appending, each on its own
    fill(api, parent, 1, start=31)
    fill(api, child, 1, start=100)
    assert texts(api, parent) == [f"m{i}" for i in range(1, 32)]
    assert texts(api, child)[1:] == [f"m{i}" for i in range(26, 31)] + ["m100"]

    # the parent compacts: the child's conversation is untouched
    child_now = listed(api, child)
    compact(api, parent, {"keepLast": 2})
    assert listed(api, child) == child_now
    assert texts(api, parent)[1:] == ["m30", "m31"]
    assert session(api, child)["compactions"] == 1 and session(api, parent)["compactions"] == 1

    # a fork of a compacted session starts compacted, and restores the full history
    grandchild = api.post(f"/v1/sessions/{child}/fork", {}, expect=201).json()["session"]["id"]
    assert listed(api, grandchild) == [dict(m, sessionId=grandchild) for m in child_now]
    summary_id = out["message"]["id"]
    api.post(f"/v1/sessions/{grandchild}/revert", {"messageId": summary_id}, expect=200)
    assert texts(api, grandchild) == [f"m{i}" for i in range(1, 31)]
    assert texts(api, child)[1:] == [f"m{i}" for i in range(26, 31)] + ["m100"]
    checkpoint_id = out["message"]["metadata"]["compaction"]["checkpointId"]
    api.post(f"/v1/sessions/{child}/restore", {"checkpointId": checkpoint_id}, expect=200)
    assert texts(api, child) == [f"m{i}" for i in range(1, 31)]
    assert texts(api, parent)[1:] == ["m30", "m31"]


def test_nothing_to_compact(api: Api) -> None:
    sid = api.session()["id"]
    assert compact(api, sid) == {"message": None, "compactedCount": 0}  # empty
    fill(api, sid, 20)
    cursor = events(api, sid)[-1]["id"]
    assert compact(api, sid) == {"message": None, "compactedCount": 0}  # default 20
    assert compact(api, sid, {"keepLast": 25}) == {"message": None, "compactedCount": 0}
    assert events(api, sid, cursor) == []
    assert session(api, sid)["compactions"] == 0
    assert len(listed(api, sid)) == 20
    # summary + 5: compacting to 5 again has only the summary before the last 5
    assert compact(api, sid, {"keepLast": 5})["compactedCount"] == 15
    assert compact(api, sid, {"keepLast": 5}) == {"message": None, "compactedCount": 0}
    assert session(api, sid)["compactions"] == 1


def test_keep_last_zero_summarizes_everything(api: Api) -> None:
    sid = api.session()["id"]
    fill(api, sid, 7)
    out = compact(api, sid, {"keep_last": 0})  # the snake_case spelling too
    assert out["compactedCount"] == 7
    got = listed(api, sid)
    assert [m["id"] for m in got] == [out["message"]["id"]]
    assert session(api, sid)["messageCount"] == 1
    m = fill(api, sid, 1, start=8)[0]
    assert m["seq"] == 2 and m["parentId"] == out["message"]["id"]


@pytest.mark.parametrize(
    "body",
    [
        {"keepLast": -1},
        {"keepLast": 10_001},
        {"keepLast": "5"},
        {"keepLast": 2.5},
        {"keepLast": True},
        {"keepLast": None},
        {"keepLats": 5},
        [],
    ],
)
def test_bad_keep_last_is_422(api: Api, body: Any) -> None:
    sid = api.session()["id"]
    fill(api, sid, 3)
    r = api.post(f"/v1/sessions/{sid}/compact", body, expect=422, code="validation_error")
    assert r.json()["details"]["errors"], r.json()
    assert len(listed(api, sid)) == 3 and session(api, sid)["compactions"] == 0


def test_refusals(api: Api, client: TestClient, tenant: Any, other: Any) -> None:
    sid = api.session()["id"]
    fill(api, sid, 5)
    # another account's session is not found
    intruder = other.api(client)
    intruder.post(f"/v1/sessions/{sid}/compact", {"keepLast": 1}, expect=404, code="not_found")
    api.post("/v1/sessions/ses_nope/compact", {}, expect=404, code="not_found")
    # a read key may not compact
    reader = tenant.api(client, "read")
    reader.post(f"/v1/sessions/{sid}/compact", {}, expect=403, code="forbidden")
    # preconditions
    version = session(api, sid)["lifecycleVersion"]
    api.post(
        f"/v1/sessions/{sid}/compact",
        {"keepLast": 1},
        headers={"If-Match": f'"{version + 1}"'},
        expect=412,
        code="precondition_failed",
    )
    api.post(
        f"/v1/sessions/{sid}/compact",
        {"keepLast": 1, "expectedVersion": version + 1},
        expect=409,
        code="version_conflict",
    )
    assert len(listed(api, sid)) == 5
    assert compact(api, sid, {"keepLast": 1, "expectedVersion": version})["compactedCount"] == 4
    # not active
    api.post(f"/v1/sessions/{sid}/close", expect=200)
    api.post(f"/v1/sessions/{sid}/compact", {}, expect=409, code="session_not_active")


def test_idempotency_key_replays(api: Api) -> None:
    sid = api.session()["id"]
    fill(api, sid, 10)
    h = {"Idempotency-Key": "compact-1"}
    first = compact(api, sid, {"keepLast": 2}, headers=h)
    again = api.post(f"/v1/sessions/{sid}/compact", {"keepLast": 2}, headers=h, expect=200)
    assert again.json() == first and again.headers["Idempotent-Replayed"] == "true"
    assert session(api, sid)["compactions"] == 1
    api.post(
        f"/v1/sessions/{sid}/compact",
        {"keepLast": 3},
        headers=h,
        expect=422,
        code="idempotency_mismatch",
    )


# -- races: a summarizer that lets the test write while it summarizes -------------------


class Hooked:
    """The default summarizer, after ``hook(call number)`` (the test's concurrent write)."""

    def __init__(self) -> None:
        self.inner = DefaultSummarizer()
        self.hook: Callable[[int], None] = lambda n: None
        self.calls: list[SummaryInput] = []
        self.lock = threading.Lock()

    def summarize(self, data: SummaryInput) -> Summary:
        with self.lock:
            self.calls.append(data)
            n = len(self.calls)
        self.hook(n)
        return self.inner.summarize(data)


@pytest.fixture
def hooked() -> Hooked:
    return Hooked()


@pytest.fixture
def racing(settings: Settings, clock: Clock, hooked: Hooked) -> Iterator[Api]:
    app = create_app(settings, clock=clock.now, summarizer=hooked)
    with TestClient(app, raise_server_exceptions=False) as c:
        secret = c.app.state.ctx.db.write_sync(auth.bootstrap)  # type: ignore[attr-defined]
        yield make_tenant(c, "default", admin_secret=secret).api(c)


def test_an_append_during_summarizing_is_kept(racing: Api, hooked: Hooked) -> None:
    api = racing
    sid = api.session()["id"]
    fill(api, sid, 20)
    appended: list[dict[str, Any]] = []
    # the summarizer runs in a worker thread while the compaction waits for it: the
    # append is a real request served meanwhile
    hooked.hook = lambda n: appended.extend(fill(api, sid, 2, start=21)) if n == 1 else None
    out = compact(api, sid, {"keepLast": 5})
    assert len(hooked.calls) == 1 and hooked.calls[0].message_count == 15
    assert out["compactedCount"] == 15
    got = listed(api, sid)
    check_path(got, sid)
    assert [text(m) for m in got[1:]] == [f"m{i}" for i in range(16, 23)]
    assert [m["id"] for m in got[-2:]] == [m["id"] for m in appended]
    assert session(api, sid)["messageCount"] == 8
    # the checkpoint holds what was there when the compaction wrote: all 22
    checkpoint_id = out["message"]["metadata"]["compaction"]["checkpointId"]
    api.post(f"/v1/sessions/{sid}/restore", {"checkpointId": checkpoint_id}, expect=200)
    assert texts(api, sid) == [f"m{i}" for i in range(1, 23)]


def test_a_delete_during_summarizing_summarizes_again(racing: Api, hooked: Hooked) -> None:
    api = racing
    sid = api.session()["id"]
    original = fill(api, sid, 12)

    def delete_first(n: int) -> None:
        if n == 1:
            api.delete(f"/v1/sessions/{sid}/messages/{original[0]['id']}", expect=204)

    hooked.hook = delete_first
    out = compact(api, sid, {"keepLast": 2})
    # the first summary was of m1..m10; m1 left meanwhile: summarized again (m2..m11)
    assert [c.message_count for c in hooked.calls] == [10, 9]
    assert out["compactedCount"] == 9
    assert texts(api, sid)[1:] == ["m11", "m12"]
    assert session(api, sid)["compactions"] == 1


def test_a_path_that_keeps_changing_is_409(racing: Api, hooked: Hooked) -> None:
    api = racing
    sid = api.session()["id"]
    original = fill(api, sid, 12)
    hooked.hook = lambda n: api.delete(
        f"/v1/sessions/{sid}/messages/{original[n - 1]['id']}", expect=204
    )
    r = api.post(
        f"/v1/sessions/{sid}/compact", {"keepLast": 2}, expect=409, code="version_conflict"
    )
    assert r.json()["details"] == {"reason": "conversation_changed"}
    assert len(hooked.calls) == 3
    assert texts(api, sid) == [f"m{i}" for i in range(4, 13)]  # nothing compacted
    assert session(api, sid)["compactions"] == 0


def test_a_close_during_summarizing_is_409(racing: Api, hooked: Hooked) -> None:
    api = racing
    sid = api.session()["id"]
    fill(api, sid, 6)
    hooked.hook = lambda n: api.post(f"/v1/sessions/{sid}/close", expect=200) if n == 1 else None
    api.post(f"/v1/sessions/{sid}/compact", {"keepLast": 1}, expect=409, code="session_not_active")
    assert len(listed(api, sid)) == 6


# -- agent sessions -----------------------------------------------------------------------


def _turn(api: Api, sid: str, script: str) -> dict[str, Any]:
    turn = api.post(f"/v1/sessions/{sid}/prompt", {"content": script}, expect=202).json()["turn"]
    deadline = time.monotonic() + 30
    while turn["status"] in ("queued", "running") and time.monotonic() < deadline:
        turn = api.get(f"/v1/sessions/{sid}/turns/{turn['id']}", params={"wait": 5}).json()["turn"]
    assert turn["status"] == "completed", turn
    return turn  # type: ignore[no-any-return]


def _said(api: Api, sid: str) -> str:
    return text(listed(api, sid)[-1])


@pytest.mark.parametrize("agent", ["scripted", "forgetful"])
def test_an_agent_session_starts_anew_with_the_summary(
    api: Api, client: TestClient, agent: str
) -> None:
    """After a compaction the agent's ACP session (which holds the old history) is not
    used again, live or loaded: a new one, whose first prompt carries the summary and
    the kept messages as context; later prompts carry none."""
    sid = api.session(agent=agent)["id"]
    _turn(api, sid, "recall")
    _turn(api, sid, "recall\ncontext")
    assert _said(api, sid) == "prompts=2context=none"
    fill(api, sid, 1, start=5)  # a user message "m5" after the turns
    out = compact(api, sid, {"keepLast": 2})
    assert out["compactedCount"] == 3
    # the agent is still running: a new ACP session on it
    _turn(api, sid, "recall\ncontext")
    said = _said(api, sid)
    assert said.startswith('prompts=1context=<context source="sessiond" reason="compaction">')
    assert "Summary of the 3 earlier messages" in said
    assert (
        "Messages since then, oldest first: / assistant: prompts=2context=none / user: m5" in said
    )
    _turn(api, sid, "recall\ncontext")
    assert _said(api, sid) == "prompts=2context=none"
    # a restarted agent loads this new ACP session (when it can), with no context again
    runner = client.app.state.ctx.runner  # type: ignore[attr-defined]
    client.portal.call(functools.partial(runner.stop_session, sid, remove=False))  # type: ignore[union-attr]
    compact(api, sid, {"keepLast": 20})  # nothing to compact: the ACP session stays
    _turn(api, sid, "recall\ncontext")
    said = _said(api, sid)
    if agent == "scripted":
        assert said == "prompts=3context=none"
    else:  # cannot load: a new session gets the summary again
        assert said.startswith("prompts=1context=<context")
    # compacted while the agent is stopped: the next process starts a new ACP session
    client.portal.call(functools.partial(runner.stop_session, sid, remove=False))  # type: ignore[union-attr]
    compact(api, sid, {"keepLast": 1})
    _turn(api, sid, "recall")
    assert _said(api, sid) == "prompts=1"


def test_compaction_while_a_turn_runs_is_409(api: Api) -> None:
    sid = api.session(agent="scripted")["id"]
    fill(api, sid, 4)
    turn = api.post(f"/v1/sessions/{sid}/prompt", {"content": "sleep: 30"}, expect=202)
    turn_id = turn.json()["turn"]["id"]
    r = api.post(f"/v1/sessions/{sid}/compact", {"keepLast": 0}, expect=409, code="session_busy")
    assert r.json()["details"]["turns"] == [turn_id]
    api.post(f"/v1/sessions/{sid}/cancel", {"queued": True}, expect=200)
    deadline = time.monotonic() + 30
    while api.get(f"/v1/sessions/{sid}/turns/{turn_id}").json()["turn"]["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert compact(api, sid, {"keepLast": 0})["compactedCount"] == 6


def test_a_failing_summarizer_is_502_and_writes_nothing(racing: Api, hooked: Hooked) -> None:
    api = racing
    sid = api.session()["id"]
    fill(api, sid, 6)

    def fail(n: int) -> None:
        raise RuntimeError("model endpoint down")

    hooked.hook = fail
    r = api.post(f"/v1/sessions/{sid}/compact", {"keepLast": 1}, expect=502, code="upstream_error")
    assert "nothing was compacted" in r.json()["error"]
    assert len(listed(api, sid)) == 6 and session(api, sid)["compactions"] == 0
