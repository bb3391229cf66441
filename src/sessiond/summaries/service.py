"""Summaries: gather the inputs (one read), summarize (no transaction), store (one write).

Closing a session sets ``summary_due``; the summary is produced right after the close
commits, and the background sweep produces any that are still due (after a crash, or
on another instance). ``store`` writes only while the summary is still due, so two
producers racing store one summary and emit one event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import sqlalchemy as sa

from sessiond.conversation import messages
from sessiond.conversation import path as P
from sessiond.conversation.parts import text_of
from sessiond.db import leases
from sessiond.db import tables as t
from sessiond.db.executor import Database, Tx
from sessiond.errors import NotFound
from sessiond.files import trees
from sessiond.files.objects import ObjectStore
from sessiond.memory import service as memories
from sessiond.sessions import kernel
from sessiond.sessions.render import render_session
from sessiond.summaries.summarizer import Summarizer, Summary, SummaryInput, ToolUse

log = logging.getLogger("sessiond.summaries")

FIRST_PAGE = 50
ASKED = 3
# A closed session whose summary is still due this long after closing is picked up by
# the sweep (the request that closed it normally produced it within milliseconds).
SWEEP_GRACE_MS = 10_000


def _tools(docs: list[dict[str, Any]]) -> list[ToolUse]:
    calls: dict[str, tuple[str, str]] = {}  # toolCallId → (name, status)
    order: list[str] = []
    results: dict[str, bool] = {}  # toolCallId → isError
    extra: list[ToolUse] = []
    for doc in docs:
        for part in doc["parts"]:
            kind = part.get("type")
            if kind == "tool_call":
                cid = part["toolCallId"]
                if cid not in calls:
                    order.append(cid)
                calls[cid] = (part["name"], part.get("status", "pending"))
            elif kind == "tool_result":
                results[part["toolCallId"]] = bool(part.get("isError"))
        if doc["role"] == "tool" and doc.get("toolCallId") not in calls:
            cid = doc.get("toolCallId")
            if cid is None or not any(p.get("type") == "tool_result" for p in doc["parts"]):
                extra.append(ToolUse(doc.get("toolName") or "tool", "ok"))
    out = []
    for cid in order:
        name, status = calls[cid]
        if status == "completed":
            outcome = "ok"
        elif status == "error":
            outcome = "error"
        elif cid in results:
            outcome = "error" if results[cid] else "ok"
        else:
            outcome = "pending"
        out.append(ToolUse(name, outcome))
    return out + extra


MAX_FILES = 200


def _changed_paths(tx: Tx, account_id: str, ws: dict[str, Any]) -> list[str]:
    """The paths that differ between the session's base and working tree (at most 200)."""
    store = ObjectStore(tx, account_id)
    out = []
    for path, _a, _b in trees.diff(store, ws["base"], ws["head"]):
        out.append(path)
        if len(out) >= MAX_FILES:
            break
    return out


def gather(tx: Tx, account_id: str, session_id: str, *, scan: int) -> SummaryInput:
    """Everything a summarizer needs, read in one transaction and bounded by ``scan``."""
    row = kernel.get_row(tx, account_id, session_id)
    return gather_prefix(tx, row, P.count(row["conversation"]), scan=scan)


def gather_prefix(tx: Tx, row: dict[str, Any], n: int, *, scan: int) -> SummaryInput:
    """``gather`` of the first ``n`` messages of the session row's path alone (what a
    compaction takes off the path: docs/design/compaction.md)."""
    account_id, session_id = row["account_id"], row["id"]
    path = row["conversation"]
    head = messages.fetch_range(tx, account_id, path, 1, min(FIRST_PAGE, n))
    tail_from = max(FIRST_PAGE + 1, n - scan + 1)
    tail = messages.fetch_range(tx, account_id, path, tail_from, n)
    docs = [json.loads(r.doc) for _, r in head + tail]
    asked = [text_of(d["parts"]) for d in docs[: len(head)] if d["role"] == "user"]
    asked = [a for a in asked if a.strip()][:ASKED]
    last = None
    for d in reversed(docs):
        if d["role"] == "assistant" and text_of(d["parts"]).strip():
            last = text_of(d["parts"])
            break
    tasks = [
        {"content": r.content, "status": r.status, "priority": r.priority}
        for r in tx.conn.execute(
            sa.select(t.tasks.c.content, t.tasks.c.status, t.tasks.c.priority)
            .where(t.tasks.c.session_id == session_id)
            .order_by(t.tasks.c.position)
        )
    ]
    ws = row["workspace"]
    return SummaryInput(
        session_id=session_id,
        title=row["title"],
        asked=asked,
        tools=_tools(docs),
        tasks=tasks,
        last_assistant=last,
        message_count=n,
        files=_changed_paths(tx, account_id, ws),
        additions=int(ws.get("linesAdded", 0)),
        deletions=int(ws.get("linesRemoved", 0)),
        truncated=tail_from > FIRST_PAGE + 1,
    )


def store(tx: Tx, account_id: str, session_id: str, summary: Summary) -> bool:
    """Store the summary of a closed session if it is still due, on the session and as its
    ``session-memory`` item (one transaction); emits ``session.updated``."""
    row = kernel.load_for_write(tx, account_id, session_id)  # a racing producer waits
    if row["summary_due"] is None:
        return False
    kernel.write_fields(
        tx, row, {"summary": summary.as_json(), "summary_due": None, "updated_at": tx.now}
    )
    memories.remember_summary(tx, row, summary.text, summary.files)
    tx.emit(
        account_id,
        "session.updated",
        {"changes": ["summary"], "session": render_session(row, tx.now, context=False)},
        session_id=session_id,
        workspace_id=row["workspace_id"],
    )
    return True


def due(tx: Tx, *, limit: int = 100) -> list[tuple[str, str]]:
    """``(account_id, session_id)`` of closed sessions whose summary is overdue."""
    rows = tx.conn.execute(
        sa.select(t.sessions.c.account_id, t.sessions.c.id)
        .where(
            t.sessions.c.summary_due.is_not(None),
            t.sessions.c.summary_due <= tx.now - SWEEP_GRACE_MS,
            t.sessions.c.deleted_at.is_(None),
        )
        .order_by(t.sessions.c.summary_due)
        .limit(limit)
    )
    return [(r.account_id, r.id) for r in rows]


async def summarize(
    db: Database, summarizer: Summarizer, account_id: str, session_id: str, *, scan: int
) -> Summary:
    data = await db.read(gather, account_id, session_id, scan=scan)
    return await asyncio.to_thread(summarizer.summarize, data)


def remember(tx: Tx, account_id: str, session_id: str, summary: Summary) -> None:
    """``summarize {remember: true}``: the summary as the session's memory item (the
    session itself is unchanged)."""
    row = kernel.get_row(tx, account_id, session_id)
    memories.remember_summary(tx, row, summary.text, summary.files)


async def produce(
    db: Database, summarizer: Summarizer, account_id: str, session_id: str, *, scan: int
) -> bool:
    """Summarize a closed session and store the result (False: nothing was due, or the
    session was deleted meanwhile)."""
    try:
        summary = await summarize(db, summarizer, account_id, session_id, scan=scan)
        return await db.write(store, account_id, session_id, summary)
    except NotFound:
        return False


async def produce_due(db: Database, summarizer: Summarizer, *, scan: int) -> int:
    """The sweep's share: produce every overdue summary. Returns how many were stored."""
    stored = 0
    for account_id, session_id in await db.read(due):
        try:
            stored += await produce(db, summarizer, account_id, session_id, scan=scan)
        except Exception:
            log.exception("summary of %s failed; will retry", session_id)
    return stored


async def sweep_loop(
    db: Database, summarizer: Summarizer, *, interval: float, scan: int, owner: str
) -> None:
    """Background: produce overdue summaries every ``interval`` seconds, while ``owner``
    holds the ``summaries`` job lease (one worker or instance at a time)."""
    while True:
        await asyncio.sleep(interval)
        try:
            if await db.write(leases.claim, "summaries", owner, leases.seconds_for(interval)):
                await produce_due(db, summarizer, scan=scan)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("summary sweep failed; will retry")
