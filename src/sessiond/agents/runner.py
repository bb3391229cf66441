"""The agent runner of one instance (docs/design/agents.md).

One worker task per session with queued turns runs them one at a time, in ``seq``
order; one agent process per session with a live or recent turn answers them. All turn
state is in rows (``turns.py``): the runner's dictionaries are a cache of which sessions
have a worker and a process, rebuilt from rows after a restart. A lease-holding worker
of several instances (next issue) takes this class's place behind the same calls:
``wake``, ``cancel``, ``set_mode``, ``stop_session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any

from sessiond.agents import acp_v1, permissions, turns
from sessiond.agents.protocol import AgentConnection, AgentFailed, ClientRefused
from sessiond.agents.registry import AgentConfig, Registry, remember
from sessiond.agents.stream import AssistantStream
from sessiond.agents.terminals import Terminals
from sessiond.approvals.wait import wait_for_decision
from sessiond.conversation import messages
from sessiond.conversation.models import MessageCreate
from sessiond.db.executor import Database, Tx
from sessiond.errors import SessiondError
from sessiond.events.bus import EventBus
from sessiond.events.store import EventFilter
from sessiond.sandbox import directory as sandbox
from sessiond.sandbox import fs
from sessiond.sandbox.manager import Layout, Sandboxes
from sessiond.sessions import kernel
from sessiond.settings import Settings
from sessiond.versions import compact as compaction
from sessiond.versions import record

log = logging.getLogger("sessiond.agents")

CANCEL_POLL_SECONDS = 1.0
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "SHELL", "TZ")


class Live:
    """One running agent of one session: its connection, directory, ACP session."""

    def __init__(self, runner: Runner, account_id: str, session_id: str, layout: Layout) -> None:
        self.runner = runner
        self.account_id = account_id
        self.session_id = session_id
        self.layout = layout
        self.root = layout.work
        self.conn: AgentConnection | None = None
        self.acp_session: str | None = None
        self.fresh = False  # the ACP session came from session/new and has had no prompt
        self.modes: list[dict[str, Any]] | None = None
        self.current_mode: str | None = None
        self.agent: AgentConfig | None = None
        self.terminals: Terminals | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.last_used = time.monotonic()
        # The turn being run: its id, its stream, what it asked and wrote.
        self.turn_id: str | None = None
        self.stream: AssistantStream | None = None
        self.asked: list[str] = []
        self.written: set[str] = set()

    # -- ClientHandler ------------------------------------------------------------------

    async def session_update(self, session_id: str, update: dict[str, Any]) -> None:
        if self.stream is not None:
            self.stream.apply(update)

    async def request_permission(
        self, session_id: str, tool_call: dict[str, Any], options: list[dict[str, Any]]
    ) -> str | None:
        r = self.runner
        turn_id = self.turn_id
        if turn_id is None or self.agent is None:
            return None
        try:
            approval = await r.db.write(
                permissions.ask,
                self.account_id,
                self.session_id,
                turn_id,
                self.agent.permissions,
                tool_call,
                options,
            )
        except SessiondError:
            return None  # the session is no longer active
        self.asked.append(approval["id"])
        if approval["status"] == "pending":
            approval = await wait_for_decision(
                r.db, r.bus, self.account_id, self.session_id, approval["id"], None
            )
        if approval["status"] not in ("granted", "denied") or approval["optionId"] is None:
            return None
        with contextlib.suppress(SessiondError):
            await r.db.write(permissions.remember, self.account_id, self.session_id, approval)
        return str(approval["optionId"])

    async def read_text_file(
        self, session_id: str, path: str, line: int | None, limit: int | None
    ) -> str:
        rel = fs.relative(self.root, path)
        data = await asyncio.to_thread(
            fs.read, self.root, rel, self.runner.settings.limits.file_bytes
        )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientRefused(f"{path}: not UTF-8 text") from None
        return fs.slice_lines(text, line, limit)

    async def write_text_file(self, session_id: str, path: str, content: str) -> None:
        rel = fs.relative(self.root, path)
        data = content.encode("utf-8")
        limit = self.runner.settings.limits.file_bytes
        if len(data) > limit:
            raise ClientRefused(f"{path}: over the file limit ({len(data)} > {limit} bytes)")
        await asyncio.to_thread(fs.write, self.root, rel, data, self.layout.uid)
        self.written.add(rel)
        try:
            await self.runner.db.write(
                sandbox.save_one,
                self.runner.settings.limits,
                self.account_id,
                self.session_id,
                rel,
                data,
            )
        except SessiondError as e:  # saved at the turn's end instead
            log.warning("fs/write_text_file %s: not saved at once: %s", rel, e)

    def _terminals(self) -> Terminals:
        if self.terminals is None:
            raise ClientRefused("no terminal support here")
        return self.terminals

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str],
        env: dict[str, str],
        cwd: str | None,
        output_byte_limit: int | None,
    ) -> str:
        return await self._terminals().create(command, args, env, cwd, output_byte_limit)

    async def terminal_output(self, session_id: str, terminal_id: str) -> dict[str, Any]:
        return self._terminals().output(terminal_id)

    async def wait_for_terminal_exit(self, session_id: str, terminal_id: str) -> dict[str, Any]:
        return await self._terminals().wait(terminal_id)

    async def kill_terminal(self, session_id: str, terminal_id: str) -> None:
        self._terminals().kill(terminal_id)

    async def release_terminal(self, session_id: str, terminal_id: str) -> None:
        await self._terminals().release(terminal_id)

    # -- lifecycle ----------------------------------------------------------------------

    async def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        if self.terminals is not None:
            await self.terminals.close()
        if self.conn is not None:
            await self.conn.close()
        self.conn = None


class Runner:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        registry: Registry,
        sandboxes: Sandboxes,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.registry = registry
        self.sandboxes = sandboxes
        # A sandbox being hibernated or removed stops its agent first.
        sandboxes.stoppers.append(self._stop_agent)
        # A prompt accepted by another instance: its turn.queued arrives here too.
        bus.listeners.append(self._on_event)
        self.lease_ms = int(settings.turn_stale_seconds * 1000)
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.again: set[str] = set()
        self.live: dict[str, Live] = {}
        self.cancels: dict[str, asyncio.Event] = {}
        self.stopping = False
        self._reaper: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self.owner = settings.resolved_instance_id()
        self._detached: set[asyncio.Task[None]] = set()

    def _detach(self, coro: Any) -> None:
        """Run ``coro`` on its own (``stop`` waits for it: no process is left half-closed)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    # -- start and stop -----------------------------------------------------------------

    async def start(self) -> None:
        """Fail the turns a dead process left running (saving their directories), then
        run what is queued."""
        await self._recover(mine=True)
        for account_id, session_id in await self.db.read(turns.sessions_with_queued):
            self.wake(account_id, session_id)
        self._reaper = asyncio.create_task(self._reap(), name="agent-reaper")
        self._beat = asyncio.create_task(self._heartbeat(), name="turn-heartbeat")

    async def _recover(self, *, mine: bool) -> None:
        """Fail dead turns: this instance's own when ``mine`` (at start), and every
        instance's whose heartbeat stopped; their directories (when they are here) are
        saved first, so a failed turn shows its files from the first read."""
        owner = self.owner if mine else None
        stale = int(self.settings.turn_stale_seconds * 1000)
        for turn in await self.db.read(turns.dead, owner, stale):
            try:
                changed, skipped, checkpoint = await self._save(
                    turn["account_id"], turn["session_id"], None
                )
            except Exception:  # the turn still fails; what its directory held stays there
                log.exception("turn %s: its directory could not be saved", turn["id"])
                changed, skipped, checkpoint = [], [], None
            failed = await self.db.write(
                turns.fail_dead,
                self.settings.limits,
                turn["id"],
                owner,
                stale,
                changed,
                skipped,
                checkpoint,
            )
            if failed is not None:
                log.warning("turn %s failed: %s", turn["id"], turns.STOPPED_BY_RESTART)

    def _on_event(self, event: dict[str, Any]) -> None:
        """A turn queued on any instance for a session whose agent lives here (this
        instance holds its lease): run it here. Other sessions are woken by the instance
        that accepted the prompt, or by the reaper once a dead owner's lease expired."""
        sid = event.get("session_id")
        if event["type"] == "turn.queued" and sid in self.live:
            self.wake(event["account_id"], sid)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.turn_heartbeat_seconds)
            try:
                await self.db.write(turns.heartbeat, self.owner, self.lease_ms)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("turn heartbeat failed; will retry")

    async def stop(self) -> None:
        """Stop every agent (their running turns fail on the next start, as after a crash:
        a graceful stop does not wait 30 minutes for a turn)."""
        self.stopping = True
        for task in (self._reaper, self._beat):
            if task is not None:
                task.cancel()
        for task in list(self.workers.values()):
            task.cancel()
        for task in list(self.workers.values()):
            with contextlib.suppress(BaseException):
                await task
        for detached in list(self._detached):
            with contextlib.suppress(BaseException):
                await detached
        for live in list(self.live.values()):
            await live.stop()
        self.live.clear()

    async def _reap(self) -> None:
        """Stop agents idle for ``agent_idle_seconds``; remove directories of sessions that
        are gone or no longer active."""
        while True:
            s = self.settings
            await asyncio.sleep(min(30.0, s.agent_idle_seconds, s.turn_stale_seconds))
            try:
                now = time.monotonic()
                for sid, live in list(self.live.items()):
                    idle = sid not in self.workers and live.turn_id is None
                    if idle and now - live.last_used > self.settings.agent_idle_seconds:
                        await self.stop_session(sid, remove=False)
                await self._recover(mine=False)  # turns of instances that died
                for account_id, session_id in await self.db.read(turns.sessions_with_queued):
                    self.wake(account_id, session_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent reaper failed; will retry")

    # -- calls from routes --------------------------------------------------------------

    def wake(self, account_id: str, session_id: str) -> None:
        """Make sure a worker runs the session's queued turns."""
        if self.stopping:
            return
        if session_id in self.workers:
            self.again.add(session_id)
            return
        self.workers[session_id] = asyncio.create_task(
            self._work(account_id, session_id), name=f"turns-{session_id}"
        )

    def cancel(self, turn_ids: list[str]) -> None:
        for turn_id in turn_ids:
            event = self.cancels.get(turn_id)
            if event is not None:
                event.set()

    async def set_mode(self, session_id: str, mode: str) -> None:
        live = self.live.get(session_id)
        if live is None or live.conn is None or live.acp_session is None:
            return
        if live.current_mode != mode:
            await live.conn.set_mode(live.acp_session, mode)
            live.current_mode = mode

    def modes(self, session_id: str) -> list[dict[str, Any]] | None:
        live = self.live.get(session_id)
        return live.modes if live is not None else None

    async def stop_session(self, session_id: str, *, remove: bool) -> None:
        """Stop the session's agent; ``remove``: its directory too (close, delete)."""
        if remove:
            account_id = self.live[session_id].account_id if session_id in self.live else None
            await self.sandboxes.discard(session_id, account_id)  # stops the agent first
        else:
            await self._stop_agent(session_id)

    async def _stop_agent(self, session_id: str) -> None:
        """Stop the session's agent and let go of its lease (another instance may take
        the session from now on)."""
        live = self.live.pop(session_id, None)
        if live is not None:
            await live.stop()
            with contextlib.suppress(Exception):
                await self.db.write(turns.release_lease, session_id, self.owner)

    # -- the worker ---------------------------------------------------------------------

    async def _work(self, account_id: str, session_id: str) -> None:
        try:
            while not self.stopping:
                self.again.discard(session_id)
                claimed = await self.db.write(
                    turns.claim_next, session_id, self.owner, self.lease_ms
                )
                if claimed is None:
                    if session_id in self.again:
                        continue
                    break
                await self._run_turn(claimed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("turn worker of %s failed", session_id)
        finally:
            self.workers.pop(session_id, None)
            if session_id in self.again and not self.stopping:
                self.again.discard(session_id)
                self.wake(account_id, session_id)

    async def _run_turn(self, claimed: dict[str, Any]) -> None:
        session = claimed["session"]
        account_id, session_id, turn_id = session["account_id"], session["id"], claimed["id"]
        limits = self.settings.limits
        cancel = self.cancels[turn_id] = asyncio.Event()
        status, stop_reason, usage, error = "failed", None, None, None
        live: Live | None = None
        assistant = await self.db.write(
            messages.append,
            limits,
            account_id,
            session_id,
            MessageCreate.model_validate({"role": "assistant", "parts": [], "status": "streaming"}),
        )
        await self.db.write(turns.set_assistant, turn_id, assistant["id"])
        stream = AssistantStream(
            self.db, limits, session, assistant["id"], flush_ms=self.settings.stream_flush_ms
        )
        # The sandbox stays in use (never hibernated) until the turn is saved.
        in_use = contextlib.AsyncExitStack()
        try:
            agent = self.registry.get(session["agent"] or "")
            if agent is None:
                raise AgentFailed(f"agent {session['agent']!r} is not configured on this server")
            layout = await in_use.enter_async_context(self.sandboxes.use(account_id, session_id))
            try:
                async with asyncio.timeout(self.settings.agent_start_timeout_seconds):
                    live = await self._live(session, agent, layout)
            except TimeoutError:
                live = self.live.get(session_id)
                limit = self.settings.agent_start_timeout_seconds
                raise AgentFailed(f"the agent did not start within {limit:g} s") from None
            live.turn_id, live.stream, live.asked, live.written = turn_id, stream, [], set()
            stream.on_mode = lambda m: setattr(live, "current_mode", m)
            mode = claimed["mode"] or session["mode"]
            if mode and live.modes and mode != live.current_mode:
                await self.set_mode(session_id, mode)
            blocks = await self.db.read(
                _prompt_blocks, account_id, session_id, claimed["user_message_id"], live.fresh
            )
            live.fresh = False
            stop_reason, usage, cancelled = await self._prompt(live, blocks, cancel)
            status = "cancelled" if cancelled or stop_reason == "cancelled" else "completed"
        except AgentFailed as e:
            tail = live.conn.stderr_tail() if live is not None and live.conn is not None else ""
            error = str(e) + (
                f"\n--- agent stderr (last bytes) ---\n{tail}" if tail.strip() else ""
            )
            log.warning("turn %s failed: %s", turn_id, e)
            if live is not None:
                await self.stop_session(session_id, remove=False)
        except Exception as e:
            error = f"internal error: {type(e).__name__}: {e}"
            log.exception("turn %s failed", turn_id)
            await self.stop_session(session_id, remove=False)
        finally:
            self.cancels.pop(turn_id, None)
            await stream.close("error" if status == "failed" else "complete")
        if usage is not None or stream.cost_usd is not None:
            usage = {
                "inputTokens": int((usage or {}).get("inputTokens") or 0),
                "outputTokens": int((usage or {}).get("outputTokens") or 0),
                "totalTokens": int((usage or {}).get("totalTokens") or 0),
                "costUsd": stream.cost_usd or 0.0,
            }
        try:
            changed, skipped, checkpoint_id = await self._save(account_id, session_id, live)
        finally:
            await in_use.aclose()
        asked = live.asked if live is not None else []
        await self.db.write(
            turns.finish,
            turn_id,
            status,
            stop_reason=stop_reason if status != "failed" else None,
            usage=usage,
            error=error,
            files_changed=changed,
            skipped=skipped,
            checkpoint_id=checkpoint_id,
            approvals_asked=asked,
        )
        if live is not None:
            live.turn_id, live.stream, live.last_used = None, None, time.monotonic()

    async def _prompt(
        self, live: Live, blocks: list[dict[str, Any]], cancel: asyncio.Event
    ) -> tuple[str | None, dict[str, Any] | None, bool]:
        """Send the prompt; returns ``(stopReason, usage, cancelled)``. A cancel sends
        ``session/cancel`` and waits ``cancel_grace_seconds``; an agent that does not end
        the turn by then is stopped. The turn timeout stops it too (AgentFailed)."""
        assert live.conn is not None and live.acp_session is not None
        prompt = asyncio.create_task(live.conn.prompt(live.acp_session, blocks))
        cancelled = asyncio.create_task(cancel.wait())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.turn_timeout_seconds
        turn_id = live.turn_id
        try:
            while True:
                # Wake at least every CANCEL_POLL_SECONDS: a cancel posted to another
                # instance is only in the row.
                left = min(deadline - loop.time(), CANCEL_POLL_SECONDS)
                done, _ = await asyncio.wait(
                    {prompt, cancelled}, timeout=max(left, 0), return_when=asyncio.FIRST_COMPLETED
                )
                if done or loop.time() >= deadline:
                    break
                if turn_id is not None and await self.db.read(turns.cancel_requested, turn_id):
                    cancel.set()
            if prompt in done:
                ended = prompt.result()
                return ended.stop_reason, ended.usage, False
            if not cancel.is_set():
                limit = self.settings.turn_timeout_seconds
                raise AgentFailed(f"the turn ran longer than {limit:g} s (the turn timeout)")
            await live.conn.cancel(live.acp_session)
            try:
                async with asyncio.timeout(self.settings.cancel_grace_seconds):
                    ended = await asyncio.shield(prompt)
                return "cancelled", ended.usage, True
            except TimeoutError:
                log.warning("agent of %s did not end a cancelled turn: stopped", live.session_id)
                await self.stop_session(live.session_id, remove=False)
                return "cancelled", None, True
            except AgentFailed:
                return "cancelled", None, True
        finally:
            cancelled.cancel()
            if not prompt.done():
                prompt.cancel()
                with contextlib.suppress(BaseException):
                    await prompt

    async def _live(self, session: dict[str, Any], agent: AgentConfig, layout: Layout) -> Live:
        """The session's running agent, started in its sandbox if needed."""
        sid = session["id"]
        live = self.live.get(sid)
        if live is not None and live.conn is not None and live.conn.alive() and live.agent == agent:
            if live.acp_session is not None and not session.get("acp_session_id"):
                # Compacted since this ACP session started (the compaction cleared the
                # id): its history is the uncompacted one, so a new ACP session.
                await self._start_acp(live, session, agent)
            return live
        if live is not None:
            await self.stop_session(sid, remove=False)
        exe = agent.resolved_command()
        if exe is None:
            raise AgentFailed(f"the agent's command was not found: {agent.command[0]}")
        root = layout.work
        live = Live(self, session["account_id"], sid, layout)
        live.agent = agent
        env = (
            {k: os.environ[k] for k in INHERITED_ENV if k in os.environ} | layout.env() | agent.env
        )
        limits = self.settings.limits
        readable = self.sandboxes.agent_paths(exe, agent.command[0], agent.ro_paths)
        live.terminals = Terminals(
            self.sandboxes,
            layout,
            env,
            limits.terminal_output_bytes,
            limits.terminal_timeout_seconds,
        )
        self.live[sid] = live
        live.conn = await acp_v1.launch(
            self.sandboxes.command(layout, [exe, *agent.command[1:]], readable=readable),
            env=env,
            cwd=str(root),
            handler=live,
            stderr_bytes=limits.agent_stderr_bytes,
            max_message_bytes=2 * limits.file_bytes + 1024 * 1024,
            preexec=self.sandboxes.confinement.preexec(),
        )
        await self._start_acp(live, session, agent)
        live.watcher = asyncio.create_task(self._watch(live), name=f"agent-watch-{sid}")
        return live

    async def _start_acp(self, live: Live, session: dict[str, Any], agent: AgentConfig) -> None:
        """``session/load`` of the session's stored ACP session when the agent can, else
        ``session/new`` (then ``live.fresh``: the first prompt carries the context of a
        compacted conversation, docs/design/compaction.md)."""
        assert live.conn is not None
        root = live.root
        started = None
        stored = session.get("acp_session_id")
        if stored and live.conn.capabilities.load_session:
            try:
                started = await live.conn.load_session(str(root), stored)
            except AgentFailed as e:
                log.info("session/load of %s refused (%s): a new ACP session", stored, e)
                if not live.conn.alive():
                    raise
        live.fresh = started is None
        if started is None:
            started = await live.conn.new_session(str(root))
        live.acp_session, live.modes, live.current_mode = (
            started.session_id,
            started.modes,
            started.current_mode,
        )
        await self.db.write(
            _remember_start,
            agent.name,
            started.modes,
            live.conn.capabilities.raw,
            session["account_id"],
            session["id"],
            started.session_id,
        )

    async def _watch(self, live: Live) -> None:
        """Copy API writes into the directory; stop the agent when the session ends."""
        f = EventFilter(
            live.account_id,
            session_id=live.session_id,
            types=("files.changed", "session.status", "session.deleted"),
        )
        sub = self.bus.subscribe(f)
        try:
            while True:
                item = await sub.get()
                if not isinstance(item, dict):
                    continue
                if item["type"] == "session.deleted" or (
                    item["type"] == "session.status" and item["data"].get("to") != "active"
                ):
                    self._detach(self.stop_session(live.session_id, remove=True))
                    return
                if item["type"] == "files.changed" and item["data"].get("reason") != "agent":
                    await self._copy_in(live, list(item["data"].get("paths") or []))
        except asyncio.CancelledError:
            pass
        finally:
            sub.close()

    async def _copy_in(self, live: Live, paths: list[str]) -> None:
        wanted, data = await self.db.read(
            sandbox.entries_at, live.account_id, live.session_id, paths
        )

        def apply() -> None:
            for path in paths:
                if path in wanted:
                    mode, sha = wanted[path]
                    sandbox.write_entry(live.root, path, mode, data[sha])
                else:
                    sandbox.remove_entry(live.root, path)

        await asyncio.to_thread(apply)

    async def _save(
        self, account_id: str, session_id: str, live: Live | None
    ) -> tuple[list[str], list[dict[str, str]], str | None]:
        """The directory saved into the working tree, then a checkpoint."""
        changed: list[str] = sorted(live.written) if live is not None else []
        skipped: list[dict[str, str]] = []
        try:
            synced = await self.sandboxes.sync(account_id, session_id, "agent")
            changed = sorted(set(changed) | set(synced.changed))
            skipped = synced.skipped
            if self.db.dialect == "postgresql":
                # Another instance may take the session over: it then needs the agent's
                # HOME (its own session store) to resume with session/load.
                await self.sandboxes.keep_home(account_id, session_id)
            checkpoint = await self.db.write(_checkpoint, account_id, session_id)
        except SessiondError as e:
            log.warning("turn end of %s: not saved: %s", session_id, e)
            return changed, skipped, None
        return changed, skipped, checkpoint


def _prompt_blocks(
    tx: Tx, account_id: str, session_id: str, message_id: str, fresh: bool = False
) -> list[dict[str, Any]]:
    """The user message's text parts as ACP content blocks; ``fresh`` (the first prompt of
    a new ACP session): after a compaction, a block of context in front of them."""
    message = json.loads(messages.get_text(tx, account_id, session_id, message_id))
    blocks = [
        {"type": "text", "text": p["text"]} for p in message["parts"] if p.get("type") == "text"
    ]
    context = (
        compaction.agent_context(tx, account_id, session_id, message["seq"]) if fresh else None
    )
    return blocks if context is None else [{"type": "text", "text": context}, *blocks]


def _remember_start(
    tx: Tx,
    name: str,
    modes: Any,
    capabilities: Any,
    account_id: str,
    session_id: str,
    acp_session_id: str,
) -> None:
    remember(tx, name, modes, capabilities)
    row = kernel.load_for_write(tx, account_id, session_id)
    if row["acp_session_id"] != acp_session_id:
        kernel.write_fields(tx, row, {"acp_session_id": acp_session_id})


def _checkpoint(tx: Tx, account_id: str, session_id: str) -> str | None:
    row = kernel.load_for_write(tx, account_id, session_id)
    if row["status"] != "active":
        return None
    return str(record.take(tx, row, auto=True, label="turn")["id"])
