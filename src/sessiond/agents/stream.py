"""One turn's assistant message, built from the agent's ``session/update``s.

``apply`` is synchronous and in memory (the SDK runs each notification as its own task;
with no await inside, they apply in the order they arrived). Writes go through one
serial queue (``Writer``), so the database sees them in the same order: the message at
most once per ``flush_ms`` and one write at a time, with ``data.delta`` (what was appended
since the last write),
and, as they come, the task list (``plan``), the mode, and ``agent.update`` events for
updates with no home in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sessiond.conversation import messages
from sessiond.db.executor import Database, Tx
from sessiond.errors import NotFound
from sessiond.sessions import kernel
from sessiond.sessions.render import render_session
from sessiond.settings import Limits
from sessiond.tasks import service as tasks
from sessiond.tasks.models import TaskList

log = logging.getLogger("sessiond.agents")

TOOL_STATUS = {
    "pending": "pending",
    "in_progress": "running",
    "completed": "completed",
    "failed": "error",
}
PLAN_STATUS = {"pending": "pending", "in_progress": "in_progress", "completed": "completed"}


def end_message(
    tx: Tx, limits: Limits, session: dict[str, Any], message_id: str, status: str
) -> None:
    """Close a streaming message as it is stored (crash recovery: its parts are what was
    flushed last). A message reverted away since is left alone."""
    try:
        text = messages.get_text(tx, session["account_id"], session["id"], message_id)
    except NotFound:
        return
    parts = json.loads(text)["parts"]
    messages.replace(tx, limits, session["account_id"], session["id"], message_id, parts, status)


class Writer:
    """A serial queue of database writes for one turn (order kept, errors logged)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(), name="turn-writer")

    async def _run(self) -> None:
        while (job := await self.queue.get()) is not None:
            try:
                await job()
            except Exception:
                log.exception("a turn's write failed")

    def put(self, job: Callable[[], Awaitable[None]]) -> None:
        self.queue.put_nowait(job)

    async def close(self) -> None:
        self.queue.put_nowait(None)
        await self.task


class AssistantStream:
    """The parts of one assistant message, and what the turn learned on the way."""

    def __init__(
        self,
        db: Database,
        limits: Limits,
        session: dict[str, Any],
        message_id: str,
        *,
        flush_ms: int,
        on_mode: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.limits = limits
        self.account_id = session["account_id"]
        self.session_id = session["id"]
        self.workspace_id = session["workspace_id"]
        self.message_id = message_id
        self.flush_s = flush_ms / 1000
        self.on_mode = on_mode
        self.parts: list[dict[str, Any]] = []
        self.delta: dict[str, Any] = {}
        self.dirty = False
        self.cost_usd: float | None = None
        self.writer = Writer(db)
        self._timer: asyncio.TimerHandle | None = None
        self._writing = False  # a message write is queued or running
        self._closed = False
        self.replaying = False  # session/load replays history we already have

    # -- updates ------------------------------------------------------------------------

    def apply(self, update: dict[str, Any]) -> None:
        """One ``session/update`` (wire JSON from an untrusted agent: every field is
        checked for its type; what does not fit is kept only in an ``agent.update``)."""
        if self.replaying:
            return
        kind = update.get("sessionUpdate")
        if kind == "agent_message_chunk":
            self._text("text", _text(update.get("content")))
        elif kind == "agent_thought_chunk":
            self._text("reasoning", _text(update.get("content")))
        elif kind == "tool_call":
            self._tool_call(update, new=True)
        elif kind == "tool_call_update":
            self._tool_call(update, new=False)
        elif kind == "plan":
            entries = update.get("entries")
            if isinstance(entries, list):
                self._plan([e for e in entries if isinstance(e, dict)])
        elif kind == "usage_update":
            cost = update.get("cost")
            amount = cost.get("amount") if isinstance(cost, dict) else None
            usd = isinstance(cost, dict) and cost.get("currency", "USD") == "USD"
            if usd and isinstance(amount, int | float) and not isinstance(amount, bool):
                self.cost_usd = float(amount)
            self._event("agent.update", {"update": update})
        elif kind == "current_mode_update":
            mode = update.get("currentModeId")
            if isinstance(mode, str):
                self._mode(mode)
        else:
            self._event("agent.update", {"update": update})

    def _text(self, part_type: str, text: str) -> None:
        if not text:
            return
        if self.parts and self.parts[-1]["type"] == part_type:
            self.parts[-1]["text"] += text
        else:
            self.parts.append({"type": part_type, "text": text})
        self.delta[part_type] = self.delta.get(part_type, "") + text
        self._touch()

    def _tool_call(self, update: dict[str, Any], *, new: bool) -> None:
        tool_id = update.get("toolCallId")
        if not isinstance(tool_id, str) or not tool_id:
            self._event("agent.update", {"update": update})
            return
        part = next(
            (p for p in self.parts if p["type"] == "tool_call" and p["toolCallId"] == tool_id),
            None,
        )
        if part is None:
            part = {
                "type": "tool_call",
                "toolCallId": tool_id,
                "name": _str(update.get("title")) or "tool",
                "input": {},
                "status": "pending",
                "output": None,
                "error": None,
            }
            self.parts.append(part)
        if _str(update.get("title")):
            part["name"] = _str(update["title"])
        if isinstance(update.get("kind"), str):
            part["kind"] = update["kind"]
        if "rawInput" in update:
            raw = update["rawInput"]
            part["input"] = raw if isinstance(raw, dict) else {"value": raw}
        status = update.get("status")
        if isinstance(status, str):
            part["status"] = TOOL_STATUS.get(status, "running")
        if "rawOutput" in update:
            part["output"] = update["rawOutput"]
        elif update.get("content"):
            part["output"] = update["content"]
        self.delta.setdefault("toolCalls", [])
        if tool_id not in self.delta["toolCalls"]:
            self.delta["toolCalls"].append(tool_id)
        self._touch()

    def _plan(self, entries: list[dict[str, Any]]) -> None:
        items = [
            {
                "content": _str(e.get("content"))[:10_000] or "(empty)",
                "status": PLAN_STATUS.get(_str(e.get("status")), "pending"),
                "priority": e.get("priority")
                if e.get("priority") in ("low", "medium", "high")
                else "medium",
            }
            for e in entries[:500]
        ]
        body = TaskList.model_validate({"tasks": items})

        async def write() -> None:
            await self.db.write(tasks.replace, self.account_id, self.session_id, body)

        self.writer.put(write)

    def _mode(self, mode: str) -> None:
        if self.on_mode is not None:
            self.on_mode(mode)

        def write(tx: Tx) -> None:
            row = kernel.load_for_write(tx, self.account_id, self.session_id)
            if row["status"] == "active" and row["mode"] != mode:
                kernel.write_fields(tx, row, {"mode": mode})
                session = render_session(row, tx.now, context=False)
                kernel.emit(tx, row, "session.updated", {"changes": ["mode"], "session": session})

        async def job() -> None:
            await self.db.write(write)

        self.writer.put(job)

    def _event(self, type: str, data: dict[str, Any]) -> None:
        def write(tx: Tx) -> None:
            tx.emit(
                self.account_id,
                type,
                data,
                session_id=self.session_id,
                workspace_id=self.workspace_id,
            )

        async def job() -> None:
            await self.db.write(write)

        self.writer.put(job)

    # -- writes -------------------------------------------------------------------------

    def _touch(self) -> None:
        self.dirty = True
        if self._timer is None and not self._writing:
            self._timer = asyncio.get_running_loop().call_later(self.flush_s, self._flush_now)

    def _flush_now(self, status: str = "streaming") -> None:
        """Queue one write of the message. While streaming, at most one is queued or
        running at a time: when the database is slow, the next write waits for the last
        one and carries everything appended meanwhile (fewer, larger writes), and it starts
        no sooner than ``flush_ms`` after the last one started."""
        self._timer = None
        final = status != "streaming"
        if not final and (not self.dirty or self._writing):
            return
        parts = [dict(p) for p in self.parts]
        delta, self.delta, self.dirty = self.delta, {}, False
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._writing = True

        async def write() -> None:
            try:
                await self.db.write(
                    messages.replace,
                    self.limits,
                    self.account_id,
                    self.session_id,
                    self.message_id,
                    parts,
                    status,
                    delta=delta or None,
                )
            finally:
                self._writing = False
                if self.dirty and not self._closed and self._timer is None:
                    wait = max(0.0, self.flush_s - (loop.time() - started))
                    self._timer = loop.call_later(wait, self._flush_now)

        self.writer.put(write)

    async def close(self, status: str) -> None:
        """Write the message one last time with its final status, and every queued write."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._flush_now(status)
        with contextlib.suppress(Exception):
            await self.writer.close()


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _text(content: Any) -> str:
    if isinstance(content, dict) and content.get("type") == "text":
        return str(content.get("text") or "")
    return ""
