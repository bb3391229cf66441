"""ACP v1 over stdio, with the ACP SDK (``agent-client-protocol`` 0.12.x).

The only module that imports the SDK. It starts the agent process (its own process
group, pipes for stdin/stdout/stderr), frames JSON-RPC strictly (a line that is not a
JSON-RPC object ends the connection: the agent broke the protocol), keeps the last bytes
of stderr, announces the client capabilities we serve (``fs`` read/write, ``terminal``),
and converts between the SDK's models and plain ACP JSON (``protocol.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from acp import PROTOCOL_VERSION, RequestError, connect_to_agent
from acp import telemetry as acp_telemetry
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    CreateTerminalResponse,
    DeniedOutcome,
    EnvVariable,
    FileSystemCapabilities,
    Implementation,
    KillTerminalResponse,
    PermissionOption,
    ReadTextFileResponse,
    ReleaseTerminalResponse,
    RequestPermissionResponse,
    TerminalExitStatus,
    TerminalOutputResponse,
    TextContentBlock,
    ToolCallUpdate,
    WaitForTerminalExitResponse,
    WriteTextFileResponse,
)
from pydantic import BaseModel

from sessiond.agents.processes import stop_process
from sessiond.agents.protocol import (
    AgentFailed,
    Capabilities,
    ClientHandler,
    ClientRefused,
    PromptEnded,
    SessionStarted,
)

CLIENT_INFO = Implementation(name="sessiond", version="0.1")

# The SDK opens an OpenTelemetry span around every JSON-RPC message when opentelemetry is
# importable (a no-op tracer unless one is configured): 37% of the host's cost per streamed
# chunk (bench/agents.py, cProfile). sessiond has its own metrics and logs; keep the SDK's
# spans for those who ask (SESSIOND_ACP_TRACING=1).
if not os.environ.get("SESSIOND_ACP_TRACING"):
    acp_telemetry.TRACER = None  # type: ignore[assignment]


def _json(model: BaseModel | None) -> dict[str, Any]:
    if model is None:
        return {}
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class _StrictTransport:
    """Newline-delimited JSON-RPC on the agent's stdout. A line that is not a JSON object
    with ``"jsonrpc": "2.0"``, or longer than ``max_line``, ends the stream and is
    remembered in ``broken`` (the SDK would log and skip it).

    ``session/update`` notifications — the stream of an agent's turn, thousands per turn —
    go straight to ``on_update`` in wire JSON, in order, without the SDK's router and
    models (three quarters of the host's cost per streamed chunk: bench/agents.py); the
    handler treats them as untrusted JSON. Everything else goes through the SDK."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_line: int,
        on_update: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_line = max_line
        self.on_update = on_update
        self.broken: str | None = None
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        async with self._send_lock:
            self.writer.write(data)
            await self.writer.drain()

    async def _line(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                return b"".join(chunks) + await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as e:
                chunk = await self.reader.readexactly(e.consumed)
            except asyncio.IncompleteReadError as e:
                return b"".join(chunks) + e.partial
            size += len(chunk)
            if size > self.max_line:
                raise ValueError(f"a message over {self.max_line} bytes")
            chunks.append(chunk)

    async def receive(self) -> dict[str, Any] | None:
        if self.broken is not None:
            return None
        while True:
            try:
                line = await self._line()
            except ValueError as e:
                self.broken = f"the agent broke the protocol: {e}"
                return None
            if not line:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                shown = line[:200].decode("utf-8", "replace")
                self.broken = f"the agent broke the protocol: not JSON-RPC: {shown!r}"
                return None
            # The SDK reads every buffered line before anything else runs: yield once per
            # message, so one agent streaming as fast as its pipe allows cannot starve the
            # other sessions' writes and streams (bench/agents.py, part 3).
            await asyncio.sleep(0)
            if self.on_update is not None and _is_update(message):
                params = message["params"]
                await self.on_update(params["sessionId"], params["update"])
                continue
            return message

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def _is_update(message: dict[str, Any]) -> bool:
    """A well-formed ``session/update`` notification (no id; params with a string
    ``sessionId`` and an object ``update`` naming its ``sessionUpdate``)."""
    if message.get("method") != "session/update" or "id" in message:
        return False
    params = message.get("params")
    return (
        isinstance(params, dict)
        and isinstance(params.get("sessionId"), str)
        and isinstance(params.get("update"), dict)
        and isinstance(params["update"].get("sessionUpdate"), str)
    )


def _refused(e: ClientRefused) -> RequestError:
    return RequestError.invalid_params({"message": str(e)})


class _Client:
    """The SDK's ``Client``: every call goes to our ``ClientHandler`` in plain JSON."""

    def __init__(self, handler: ClientHandler) -> None:
        self.h = handler

    def on_connect(self, conn: Any) -> None:
        pass

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        await self.h.session_update(session_id, _json(update))

    async def request_permission(
        self,
        session_id: str,
        tool_call: ToolCallUpdate,
        options: list[PermissionOption],
        **kwargs: Any,
    ) -> RequestPermissionResponse:
        chosen = await self.h.request_permission(
            session_id, _json(tool_call), [_json(o) for o in options]
        )
        if chosen is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=chosen)
        )

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **kwargs: Any,
    ) -> ReadTextFileResponse:
        try:
            content = await self.h.read_text_file(session_id, path, line, limit)
        except ClientRefused as e:
            raise _refused(e) from None
        return ReadTextFileResponse(content=content)

    async def write_text_file(
        self, session_id: str, path: str, content: str, **kwargs: Any
    ) -> WriteTextFileResponse | None:
        try:
            await self.h.write_text_file(session_id, path, content)
        except ClientRefused as e:
            raise _refused(e) from None
        return WriteTextFileResponse()

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None = None,
        env: Sequence[EnvVariable] | None = None,
        cwd: str | None = None,
        output_byte_limit: int | None = None,
        **kwargs: Any,
    ) -> CreateTerminalResponse:
        variables = {v.name: v.value for v in env or []}
        try:
            terminal_id = await self.h.create_terminal(
                session_id, command, list(args or []), variables, cwd, output_byte_limit
            )
        except ClientRefused as e:
            raise _refused(e) from None
        return CreateTerminalResponse(terminal_id=terminal_id)

    async def terminal_output(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> TerminalOutputResponse:
        try:
            out = await self.h.terminal_output(session_id, terminal_id)
        except ClientRefused as e:
            raise _refused(e) from None
        status = out.get("exitStatus")
        return TerminalOutputResponse(
            output=out["output"],
            truncated=out["truncated"],
            exit_status=TerminalExitStatus(
                exit_code=status.get("exitCode"), signal=status.get("signal")
            )
            if status
            else None,
        )

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> WaitForTerminalExitResponse:
        try:
            out = await self.h.wait_for_terminal_exit(session_id, terminal_id)
        except ClientRefused as e:
            raise _refused(e) from None
        return WaitForTerminalExitResponse(exit_code=out.get("exitCode"), signal=out.get("signal"))

    async def kill_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> KillTerminalResponse | None:
        try:
            await self.h.kill_terminal(session_id, terminal_id)
        except ClientRefused as e:
            raise _refused(e) from None
        return KillTerminalResponse()

    async def release_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> ReleaseTerminalResponse | None:
        try:
            await self.h.release_terminal(session_id, terminal_id)
        except ClientRefused as e:
            raise _refused(e) from None
        return ReleaseTerminalResponse()

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None


class Connection:
    """A running ACP v1 agent (``protocol.AgentConnection``)."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        transport: _StrictTransport,
        handler: ClientHandler,
        stderr_bytes: int,
    ) -> None:
        self.process = process
        self.transport = transport
        self.conn = connect_to_agent(_Client(handler), transport)  # type: ignore[arg-type]
        self.capabilities = Capabilities()
        self._stderr = bytearray()
        self._stderr_bytes = stderr_bytes
        self._stderr_task = asyncio.create_task(self._drain_stderr(), name="agent-stderr")

    async def _drain_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := await stream.read(65536):
            self._stderr += chunk
            if len(self._stderr) > self._stderr_bytes:
                del self._stderr[: len(self._stderr) - self._stderr_bytes]

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.process.returncode is None and self.transport.broken is None

    async def _failure(self, what: str, e: BaseException) -> AgentFailed:
        """Why a call failed, as the turn's error will say it."""
        if isinstance(e, RequestError):
            return AgentFailed(f"{what}: the agent answered error {e.code}: {e}")
        if self.transport.broken is not None:
            return AgentFailed(self.transport.broken)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 2)
        await asyncio.sleep(0)  # let the stderr reader take what is left
        code = self.process.returncode
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            return AgentFailed(f"the agent {how} during {what}")
        return AgentFailed(f"{what}: {type(e).__name__}: {e}")

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except (RequestError, ConnectionError, OSError, RuntimeError) as e:
            raise await self._failure(what, e) from None

    async def initialize(self) -> None:
        caps = ClientCapabilities(
            fs=FileSystemCapabilities(read_text_file=True, write_text_file=True), terminal=True
        )
        answer = await self._call(
            "initialize",
            self.conn.initialize(
                protocol_version=PROTOCOL_VERSION, client_capabilities=caps, client_info=CLIENT_INFO
            ),
        )
        self.capabilities = Capabilities(raw=_json(answer.agent_capabilities))

    @staticmethod
    def _started(session_id: str, answer: Any) -> SessionStarted:
        modes = getattr(answer, "modes", None) if answer is not None else None
        if modes is None:
            # Agents that announce their modes as a config option (category "mode", as
            # opencode does) instead of a SessionModeState.
            for option in getattr(answer, "config_options", None) or []:
                raw = _json(option)
                if raw.get("category") == "mode" and isinstance(raw.get("options"), list):
                    found = [
                        {"id": o["value"], "name": o.get("name") or o["value"]}
                        for o in raw["options"]
                        if isinstance(o, dict) and isinstance(o.get("value"), str)
                    ]
                    return SessionStarted(
                        session_id=session_id,
                        modes=found,
                        current_mode=raw.get("currentValue"),
                    )
            return SessionStarted(session_id=session_id)
        return SessionStarted(
            session_id=session_id,
            modes=[_json(m) for m in modes.available_modes],
            current_mode=modes.current_mode_id,
        )

    async def new_session(self, cwd: str) -> SessionStarted:
        answer = await self._call("session/new", self.conn.new_session(cwd=cwd, mcp_servers=[]))
        return self._started(answer.session_id, answer)

    async def load_session(self, cwd: str, session_id: str) -> SessionStarted:
        answer = await self._call(
            "session/load",
            self.conn.load_session(cwd=cwd, session_id=session_id, mcp_servers=[]),
        )
        return self._started(session_id, answer)

    async def prompt(self, session_id: str, blocks: list[dict[str, Any]]) -> PromptEnded:
        content: list[Any] = [
            TextContentBlock.model_validate(b) for b in blocks if b.get("type") == "text"
        ]
        answer = await self._call(
            "session/prompt", self.conn.prompt(session_id=session_id, prompt=content)
        )
        usage = _json(answer.usage) if answer.usage is not None else None
        return PromptEnded(stop_reason=str(answer.stop_reason), usage=usage)

    async def cancel(self, session_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.conn.cancel(session_id=session_id)

    async def set_mode(self, session_id: str, mode_id: str) -> None:
        await self._call(
            "session/set_mode", self.conn.set_session_mode(session_id=session_id, mode_id=mode_id)
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.close(), 2)
        await stop_process(self.process)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stderr_task, 1)


async def launch(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    handler: ClientHandler,
    stderr_bytes: int,
    max_message_bytes: int,
    preexec: Callable[[], None] | None = None,
) -> Connection:
    """Start the agent and ``initialize`` it. Raises ``AgentFailed`` when it cannot start
    or does not answer ``initialize`` (with its stderr tail in the message)."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            limit=1024 * 1024,
            preexec_fn=preexec,
        )
    except OSError as e:
        raise AgentFailed(f"the agent could not start: {argv[0]}: {e.strerror or e}") from None
    assert process.stdout is not None and process.stdin is not None
    transport = _StrictTransport(
        process.stdout, process.stdin, max_message_bytes, on_update=handler.session_update
    )
    connection = Connection(process, transport, handler, stderr_bytes)
    try:
        await connection.initialize()
    except BaseException:
        await connection.close()
        raise
    return connection
