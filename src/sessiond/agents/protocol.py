"""The seam between the runner and a protocol adapter, in plain ACP JSON.

The runner speaks to an ``AgentConnection`` and answers the agent through a
``ClientHandler``; both carry dicts in ACP's own JSON shape (camelCase keys, as on the
wire). ``acp_v1.py`` implements them with the ACP SDK; an ACP v2 adapter (no ``fs/*``,
no ``terminal/*``, no ``session/load``) is a second module with the same two shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sessiond.sandbox.fs import Refused


class AgentFailed(Exception):
    """The agent cannot go on: it could not start, exited, or broke the protocol.
    ``str(e)`` says what happened; the runner adds the agent's stderr tail."""


# A client method refuses the agent's request (a path outside the sandbox, an unknown
# terminal): the adapter answers with a JSON-RPC error carrying the message. One class
# with the sandbox's path refusals, so ``fs`` needs no import from here.
ClientRefused = Refused


@dataclass
class SessionStarted:
    """The answer of ``session/new`` or ``session/load``."""

    session_id: str
    modes: list[dict[str, Any]] | None = None  # [{id, name, description?}]
    current_mode: str | None = None


@dataclass
class PromptEnded:
    stop_reason: str
    usage: dict[str, Any] | None = None  # {inputTokens, outputTokens, totalTokens, ...}


@dataclass
class Capabilities:
    """What the agent said in ``initialize``."""

    raw: dict[str, Any] = field(default_factory=dict)  # agentCapabilities as sent

    @property
    def load_session(self) -> bool:
        return bool(self.raw.get("loadSession"))


class ClientHandler(Protocol):
    """What the agent may ask of us while a connection is open."""

    async def session_update(self, session_id: str, update: dict[str, Any]) -> None: ...

    async def request_permission(
        self, session_id: str, tool_call: dict[str, Any], options: list[dict[str, Any]]
    ) -> str | None:
        """The chosen ``optionId``, or None when the request is cancelled."""
        ...

    async def read_text_file(
        self, session_id: str, path: str, line: int | None, limit: int | None
    ) -> str: ...

    async def write_text_file(self, session_id: str, path: str, content: str) -> None: ...

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str],
        env: dict[str, str],
        cwd: str | None,
        output_byte_limit: int | None,
    ) -> str: ...

    async def terminal_output(self, session_id: str, terminal_id: str) -> dict[str, Any]:
        """``{output, truncated, exitStatus?: {exitCode, signal}}``."""
        ...

    async def wait_for_terminal_exit(self, session_id: str, terminal_id: str) -> dict[str, Any]:
        """``{exitCode, signal}``."""
        ...

    async def kill_terminal(self, session_id: str, terminal_id: str) -> None: ...

    async def release_terminal(self, session_id: str, terminal_id: str) -> None: ...


class AgentConnection(Protocol):
    """One running agent process, spoken to over one protocol."""

    capabilities: Capabilities

    async def new_session(self, cwd: str) -> SessionStarted: ...

    async def load_session(self, cwd: str, session_id: str) -> SessionStarted: ...

    async def prompt(self, session_id: str, blocks: list[dict[str, Any]]) -> PromptEnded: ...

    async def cancel(self, session_id: str) -> None: ...

    async def set_mode(self, session_id: str, mode_id: str) -> None: ...

    def alive(self) -> bool: ...

    def stderr_tail(self) -> str: ...

    async def close(self) -> None:
        """Stop the process (and its process group): stdin closed, then TERM, then KILL."""
        ...
