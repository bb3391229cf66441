"""The conversation path (pure logic) and the O(1) fork / head-move operations.

Fork and head moves must copy and delete no message rows, whatever the history's length:
the tests count rows before and after at 10 and at 10,000 messages.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sessiond.conversation import messages
from sessiond.conversation import path as P
from sessiond.conversation.models import MessageCreate
from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.ids import new_id
from sessiond.sessions import kernel
from sessiond.sessions import service as sessions
from sessiond.sessions.models import SessionCreate
from sessiond.versions import appends
from tests.support.api import Api, Tenant
from tests.support.purge import purge

# -- pure path logic ---------------------------------------------------------------------------


def build(n: int, branch: str = "b") -> P.Path:
    path = P.empty()
    for _ in range(n):
        path, _, _ = P.append(path, branch)
    return path


def test_append_extends_one_segment() -> None:
    path = build(5)
    assert path == {"head": "b", "next": 6, "segments": [["b", 1, 5, 0]]}
    assert P.count(path) == 5


def test_remove_splits_and_shifts() -> None:
    path = P.remove(build(5), 3)
    assert path["segments"] == [["b", 1, 2, 0], ["b", 4, 5, -1]]
    assert [P.at_seq(path, s) for s in (1, 2, 3, 4)] == [("b", 1), ("b", 2), ("b", 4), ("b", 5)]
    assert P.locate(path, "b", 3) is None
    path, bseq, seq = P.append(path, "b")
    assert (bseq, seq) == (6, 5) and path["segments"][-1] == ["b", 4, 6, -1]
    assert P.remove(build(1), 1)["segments"] == []


def test_cut_then_new_branch() -> None:
    path = P.cut(build(5), 3)
    assert path == {"head": None, "next": 1, "segments": [["b", 1, 3, 0]]}
    path, bseq, seq = P.append(path, "c")
    assert (bseq, seq) == (1, 4)
    assert path["segments"] == [["b", 1, 3, 0], ["c", 1, 1, 3]]
    assert P.cut(path, 0)["segments"] == []
    assert P.window(path, 2, 4) == [P.Range("b", 2, 3, 0), P.Range("c", 1, 1, 3)]


def test_random_operations_match_a_list_model() -> None:
    """Against a plain list of (branch, bseq): append, remove, cut, locate, window."""
    rng = random.Random(7)
    path = P.empty()
    model: list[tuple[str, int]] = []
    nexts: dict[str, int] = {}
    for step in range(2000):
        op = rng.random()
        if op < 0.6 or not model:
            branch = path["head"] or f"b{step}"
            path, bseq, seq = P.append(path, branch)
            nexts[branch] = bseq + 1
            model.append((branch, bseq))
            assert seq == len(model)
        elif op < 0.85:
            i = rng.randrange(len(model))
            path = P.remove(path, i + 1)
            del model[i]
            path["head"], path["next"] = path["head"], path["next"]
        else:
            k = rng.randrange(len(model) + 1)
            path = P.cut(path, k)
            model = model[:k]
        assert P.count(path) == len(model)
        for s, (b, q) in enumerate(model, 1):
            assert P.at_seq(path, s) == (b, q)
            assert P.locate(path, b, q) == s
        if model:
            a = rng.randint(1, len(model))
            z = rng.randint(a, len(model))
            got = [(r.branch, q) for r in P.window(path, a, z) for q in range(r.lo, r.hi + 1)]
            assert got == model[a - 1 : z]


# -- fork and head moves at the service level ---------------------------------------------------


def _count_rows(tx: Tx) -> int:
    return int(tx.conn.execute(sa.select(sa.func.count()).select_from(t.messages)).scalar_one())


def _seed(client: TestClient, tenant: Tenant, n: int) -> str:
    """A session with ``n`` messages. The first 10 go through the service; the rest are
    bulk-inserted on the same branch (the seeding is not what is tested, and 10,000
    appends one by one would dominate the suite's time)."""
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    limits = client.app.state.ctx.settings.limits  # type: ignore[attr-defined]

    def make(tx: Tx) -> str:
        row = sessions.create(tx, limits, tenant.account_id, SessionCreate(title="src"))
        for i in range(min(n, 10)):
            body = MessageCreate(role="user" if i % 2 == 0 else "assistant", content=f"m{i}")
            appends.append(tx, limits, tenant.account_id, row["id"], body)
        if n <= 10:
            return str(row["id"])
        row = kernel.load_for_write(tx, tenant.account_id, row["id"])
        path = row["conversation"]
        branch = path["head"]
        template = tx.conn.execute(
            sa.select(t.messages.c.doc).where(t.messages.c.branch_id == branch)
        ).first()
        assert template is not None
        tx.conn.execute(
            t.messages.insert(),
            [
                {
                    "id": new_id("msg"),
                    "account_id": tenant.account_id,
                    "session_id": row["id"],
                    "branch_id": branch,
                    "bseq": i,
                    "role": "user",
                    "status": "complete",
                    "doc": template[0],
                    "created_at": tx.now,
                    "updated_at": tx.now,
                }
                for i in range(11, n + 1)
            ],
        )
        path = {"head": branch, "next": n + 1, "segments": [[branch, 1, n, 0]]}
        kernel.touch(tx, row, conversation=path, message_count=n)
        return str(row["id"])

    return db.write_sync(make)  # type: ignore[no-any-return]


def _fork(client: TestClient, tenant: Tenant, source_id: str, at_seq: int | None) -> str:
    limits = client.app.state.ctx.settings.limits  # type: ignore[attr-defined]

    def fork(tx: Tx) -> str:
        source = kernel.get_row(tx, tenant.account_id, source_id)
        full = source["conversation"]
        path = P.cut(full, P.count(full) if at_seq is None else at_seq)
        child = sessions.create(tx, limits, tenant.account_id, SessionCreate(title="fork"))
        messages.move_head(tx, child, path)
        return str(child["id"])

    return client.app.state.ctx.db.write_sync(fork)  # type: ignore[attr-defined,no-any-return]


def _ids(api: Api, sid: str, **params: Any) -> list[str]:
    """Ids of the first page."""
    page = api.get(f"/v1/sessions/{sid}/messages", params={"limit": 200, **params}).json()
    return [m["id"] for m in page["messages"]]


@pytest.mark.parametrize("size", [10, 10_000])
def test_fork_copies_no_rows(client: TestClient, tenant: Tenant, api: Api, size: int) -> None:
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    sid = _seed(client, tenant, size)
    parent_ids = _ids(api, sid, order="desc", limit=20)[::-1]
    before = db.read_sync(_count_rows)
    at = size - 5
    child = _fork(client, tenant, sid, at)
    assert db.read_sync(_count_rows) == before  # no row copied
    shown = api.get(f"/v1/sessions/{child}/messages", params={"order": "desc", "limit": 5}).json()
    assert [m["seq"] for m in shown["messages"]] == [at, at - 1, at - 2, at - 3, at - 4]
    assert [m["id"] for m in shown["messages"]][::-1] == parent_ids[-10:-5]
    assert shown["messages"][0]["sessionId"] == child
    assert api.get(f"/v1/sessions/{child}").json()["session"]["messageCount"] == at
    # isolation both ways
    c_new = api.post(f"/v1/sessions/{child}/messages", {"role": "user", "content": "in fork"})
    p_new = api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "content": "in parent"})
    c_msg, p_msg = c_new.json()["message"], p_new.json()["message"]
    assert c_msg["seq"] == at + 1 and c_msg["parentId"] == parent_ids[-6]
    assert p_msg["seq"] == size + 1
    tail_child = _ids(api, child, order="desc", limit=3)
    tail_parent = _ids(api, sid, order="desc", limit=3)
    assert p_msg["id"] not in _ids(api, child, after=at - 2)
    assert c_msg["id"] not in _ids(api, sid, after=size - 2)
    assert tail_child[0] == c_msg["id"] and tail_parent[0] == p_msg["id"]
    api.get(f"/v1/sessions/{child}/messages/{p_msg['id']}", expect=404)
    api.get(f"/v1/sessions/{child}/messages/{parent_ids[-6]}", expect=200)
    # deleting the parent keeps what the fork shows; deleting the fork then frees it all
    api.delete(f"/v1/sessions/{sid}", expect=204)
    assert _ids(api, child, order="desc", limit=2) == [c_msg["id"], parent_ids[-6]]
    # (rows are freed a branch at a time: the parent's branch stays whole while shown)
    purge(client)
    assert db.read_sync(_count_rows) == before + 2
    api.delete(f"/v1/sessions/{child}", expect=204)
    purge(client)
    assert db.read_sync(_count_rows) == 0


@pytest.mark.parametrize("size", [10, 10_000])
def test_move_head_and_back(client: TestClient, tenant: Tenant, api: Api, size: int) -> None:
    db = client.app.state.ctx.db  # type: ignore[attr-defined]
    sid = _seed(client, tenant, size)
    last = _ids(api, sid, order="desc", limit=3)
    before = db.read_sync(_count_rows)

    def move(tx: Tx, to: int | P.Path) -> P.Path:
        row = kernel.load_for_write(tx, tenant.account_id, sid)
        saved: P.Path = row["conversation"]
        target = P.cut(saved, to) if isinstance(to, int) else to
        messages.move_head(tx, row, target)
        return saved

    saved = db.write_sync(move, 3)  # "revert" to message 3
    assert db.read_sync(_count_rows) == before
    assert api.get(f"/v1/sessions/{sid}").json()["session"]["messageCount"] == 3
    api.get(f"/v1/sessions/{sid}/messages/{last[0]}", expect=404)
    new = api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "content": "again"}).json()
    assert new["message"]["seq"] == 4
    db.write_sync(move, saved)  # "unrevert": the old path, untouched
    assert api.get(f"/v1/sessions/{sid}").json()["session"]["messageCount"] == size
    assert _ids(api, sid, order="desc", limit=3) == last
    api.get(f"/v1/sessions/{sid}/messages/{new['message']['id']}", expect=404)
    assert db.read_sync(_count_rows) == before + 1
    after_unrevert = api.post(f"/v1/sessions/{sid}/messages", {"role": "user", "content": "x"})
    assert after_unrevert.json()["message"]["seq"] == size + 1
    assert after_unrevert.json()["message"]["parentId"] == last[0]
