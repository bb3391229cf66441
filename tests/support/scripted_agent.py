"""A deterministic ACP agent for the suite, written with the ACP SDK (agent side).

Run as a script (``python scripted_agent.py``) in the sandbox directory. A prompt is a
script: one command per line, executed in order.

    say: TEXT            stream TEXT as message chunks, one per word (space kept)
    chunks: N [SIZE]     stream N chunks of SIZE (default 8) characters
    think: TEXT          a thought chunk
    tool: ID TITLE...    a tool call (kind "execute"): pending, in_progress, completed
    ask: ID KIND TITLE   ask permission for a tool call; say "granted:<optionId>",
                         "denied:<optionId>" or "cancelled"
    write: PATH TEXT     write a file directly (\\n in TEXT is a newline)
    fswrite: PATH TEXT   write through fs/write_text_file; say "fswrite ok" or the error
    fsread: PATH         read through fs/read_text_file; say the content or the error
    delete: PATH         delete a file directly
    plan: A | B | C      a plan of three pending entries
    usage: IN OUT COST   report token usage (in the prompt answer) and a cost update
    mode: ID             report a mode change (current_mode_update)
    term: CMD...         run CMD through terminal/*; say its exit code and output
    sleep: SECONDS       wait (a cancel ends the wait and the turn: stop reason cancelled)
    hang                 wait forever, ignoring cancel
    crash                write to stderr and exit with status 3
    garbage              write a line that is not JSON-RPC to stdout
    raw: JSON            write a session/update with this update object, bypassing the SDK
    recall               say how many prompts this ACP session has seen
    context              say the prompt's blocks of context (``<context ...>``), lines
                         joined by " / ", or "none"
    update: KIND         send an unusual update (available_commands_update)
    stop: REASON         end the turn with this stop reason

Environment: ``SCRIPTED_LOAD=0`` announces no ``session/load``; sessions are remembered
across processes (for ``session/load``) under ``$SCRIPTED_STATE/.scripted``, else
``$HOME/.scripted`` (the sandbox's private HOME).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    Agent,
    Client,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptResponse,
    SetSessionModeResponse,
    plan_entry,
    run_agent,
    start_tool_call,
    update_agent_message_text,
    update_agent_thought_text,
    update_plan,
    update_tool_call,
)
from acp.helpers import update_current_mode
from acp.schema import (
    AgentCapabilities,
    AvailableCommand,
    AvailableCommandsUpdate,
    Cost,
    PermissionOption,
    SessionMode,
    SessionModeState,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)

MODES = [SessionMode(id="build", name="Build"), SessionMode(id="plan", name="Plan")]


class Scripted(Agent):
    def __init__(self) -> None:
        self.client: Client | None = None
        self.prompts: dict[str, int] = {}
        self.cancelled: dict[str, asyncio.Event] = {}
        self.context: dict[str, list[str]] = {}
        state = os.environ.get("SCRIPTED_STATE") or os.environ.get("HOME")
        self.state = Path(state) / ".scripted" if state else None

    def on_connect(self, conn: Client) -> None:
        self.client = conn

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        load = os.environ.get("SCRIPTED_LOAD", "1") != "0"
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(load_session=load),
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        sid = f"scripted-{uuid.uuid4().hex[:12]}"
        self.prompts[sid] = 0
        self._save(sid)
        return NewSessionResponse(
            session_id=sid, modes=SessionModeState(available_modes=MODES, current_mode_id="build")
        )

    async def load_session(
        self, cwd: str, session_id: str, **kwargs: Any
    ) -> LoadSessionResponse | None:
        if self.state is None or not (self.state / session_id).exists():
            raise_unknown(session_id)
        self.prompts[session_id] = int((self.state / session_id).read_text())
        return LoadSessionResponse(
            modes=SessionModeState(available_modes=MODES, current_mode_id="build")
        )

    async def set_session_mode(
        self, session_id: str, mode_id: str, **kwargs: Any
    ) -> SetSessionModeResponse | None:
        return SetSessionModeResponse()

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancelled.setdefault(session_id, asyncio.Event()).set()

    def _save(self, sid: str) -> None:
        if self.state is not None:
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / sid).write_text(str(self.prompts[sid]))

    # -- prompts --------------------------------------------------------------------------

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        assert self.client is not None
        self.prompts[session_id] = self.prompts.get(session_id, 0) + 1
        self._save(session_id)
        cancel = self.cancelled[session_id] = asyncio.Event()
        # A block of context from the client (``<context ...>``) is not a script: the
        # ``context`` command says it.
        texts = [getattr(block, "text", "") for block in prompt]
        self.context[session_id] = [x for x in texts if x.startswith("<context")]
        text = "".join(x for x in texts if not x.startswith("<context"))
        usage: Usage | None = None
        stop = "end_turn"
        for line in text.splitlines():
            verb, _, arg = line.strip().partition(":")
            if not verb:
                continue
            arg = arg.strip()
            if verb == "stop":
                stop = arg
            elif verb == "usage":
                i, o, cost = arg.split()
                usage = Usage(
                    input_tokens=int(i), output_tokens=int(o), total_tokens=int(i) + int(o)
                )
                await self._update(
                    session_id,
                    UsageUpdate(
                        session_update="usage_update",
                        used=int(i) + int(o),
                        size=200_000,
                        cost=Cost(amount=float(cost), currency="USD"),
                    ),
                )
            elif verb == "sleep":
                try:
                    await asyncio.wait_for(cancel.wait(), float(arg))
                    return PromptResponse(stop_reason="cancelled")
                except TimeoutError:
                    pass
            else:
                await self._run(session_id, verb, arg)
            if cancel.is_set():
                return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason=stop, usage=usage)

    async def _update(self, session_id: str, update: Any) -> None:
        assert self.client is not None
        await self.client.session_update(session_id=session_id, update=update)

    async def _say(self, session_id: str, text: str) -> None:
        await self._update(session_id, update_agent_message_text(text))

    async def _run(self, sid: str, verb: str, arg: str) -> None:
        client = self.client
        assert client is not None
        if verb == "say":
            words = arg.split(" ")
            for i, word in enumerate(words):
                await self._say(sid, word + (" " if i < len(words) - 1 else ""))
        elif verb == "chunks":
            n, _, size = arg.partition(" ")
            for i in range(int(n)):
                await self._say(sid, str(i % 10) * int(size or 8))
        elif verb == "think":
            await self._update(sid, update_agent_thought_text(arg))
        elif verb == "tool":
            tid, _, title = arg.partition(" ")
            await self._update(
                sid,
                start_tool_call(tid, title, kind="execute", status="pending", raw_input={"x": 1}),
            )
            await self._update(sid, update_tool_call(tid, status="in_progress"))
            await self._update(sid, update_tool_call(tid, status="completed", raw_output="done"))
        elif verb == "ask":
            tid, kind, title = arg.split(" ", 2)
            await self._update(sid, start_tool_call(tid, title, kind=kind, status="pending"))
            options = [
                PermissionOption(option_id="once", name="Allow once", kind="allow_once"),
                PermissionOption(option_id="always", name="Always allow", kind="allow_always"),
                PermissionOption(option_id="no", name="Reject", kind="reject_once"),
                PermissionOption(option_id="never", name="Never", kind="reject_always"),
            ]
            answer = await client.request_permission(
                session_id=sid,
                tool_call=ToolCallUpdate(tool_call_id=tid, title=title, kind=kind),
                options=options,
            )
            outcome = answer.outcome
            if outcome.outcome == "selected":
                granted = outcome.option_id in ("once", "always")
                word = "granted" if granted else "denied"
                await self._say(sid, f"{word}:{outcome.option_id}")
                status = "completed" if granted else "failed"
            else:
                await self._say(sid, "cancelled")
                status = "failed"
            await self._update(sid, update_tool_call(tid, status=status))
        elif verb == "write":
            path, _, body = arg.partition(" ")
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body.replace("\\n", "\n"))
        elif verb == "delete":
            Path(arg).unlink()
        elif verb == "fswrite":
            path, _, body = arg.partition(" ")
            try:
                await client.write_text_file(
                    session_id=sid, path=_abs(path), content=body.replace("\\n", "\n")
                )
                await self._say(sid, "fswrite ok")
            except Exception as e:  # the client's JSON-RPC error
                await self._say(sid, f"fswrite error: {_message(e)}")
        elif verb == "fsread":
            try:
                got = await client.read_text_file(session_id=sid, path=_abs(arg))
                await self._say(sid, got.content)
            except Exception as e:
                await self._say(sid, f"fsread error: {_message(e)}")
        elif verb == "plan":
            entries = [
                plan_entry(x.strip(), priority="medium", status="pending") for x in arg.split("|")
            ]
            await self._update(sid, update_plan(entries))
        elif verb == "mode":
            await self._update(sid, update_current_mode(arg))
        elif verb == "term":
            argv = arg.split()
            term = await client.create_terminal(session_id=sid, command=argv[0], args=argv[1:])
            done = await client.wait_for_terminal_exit(session_id=sid, terminal_id=term.terminal_id)
            out = await client.terminal_output(session_id=sid, terminal_id=term.terminal_id)
            await client.release_terminal(session_id=sid, terminal_id=term.terminal_id)
            await self._say(sid, f"exit={done.exit_code} output={out.output.strip()}")
        elif verb == "hang":
            await asyncio.Event().wait()
        elif verb == "crash":
            sys.stderr.write("scripted agent: crashing as asked\n")
            sys.stderr.flush()
            os._exit(3)
        elif verb == "raw":
            line = {"jsonrpc": "2.0", "method": "session/update"}
            line["params"] = {"sessionId": sid, "update": json.loads(arg)}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
        elif verb == "garbage":
            sys.stdout.write("this is not json-rpc\n")
            sys.stdout.flush()
        elif verb == "context":
            given = " | ".join(" / ".join(x.strip().splitlines()) for x in self.context[sid])
            await self._say(sid, f"context={given or 'none'}")
        elif verb == "recall":
            await self._say(sid, f"prompts={self.prompts[sid]}")
        elif verb == "update":
            cmd = AvailableCommand(name="review", description="Review the diff")
            await self._update(
                sid,
                AvailableCommandsUpdate(
                    session_update="available_commands_update", available_commands=[cmd]
                ),
            )
        else:
            await self._say(sid, f"unknown command {verb}")


def _abs(path: str) -> str:
    return path if path.startswith("/") else str(Path.cwd() / path)


def _message(e: Exception) -> str:
    data = getattr(e, "data", None)
    return str(data.get("message") if isinstance(data, dict) and "message" in data else e)


def raise_unknown(session_id: str) -> None:
    from acp import RequestError

    raise RequestError.invalid_params({"sessionId": session_id, "message": "unknown session"})


if __name__ == "__main__":
    sys.stderr.write(json.dumps({"scripted": "started", "cwd": os.getcwd()}) + "\n")
    asyncio.run(run_agent(Scripted()))
