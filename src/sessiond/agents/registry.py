"""The agents a server can run: ``agents.toml`` → ``AgentConfig``, and what each agent
announced the last time it started (table ``agent_info``).

An agent is a command line, configured by the operator, never through the API. The file
is read when the server starts and again whenever it changed (its mtime), so an edit
takes effect on the next request without a restart. A broken file is not fatal: every
agent it would define is unknown, and ``GET /v1/agents`` says why (``error``).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import tomllib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sessiond.db import tables as t
from sessiond.db.executor import Tx
from sessiond.sessions.models import Policy

log = logging.getLogger("sessiond.agents")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class AgentConfig(BaseModel):
    """One ``[agents.<name>]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    default_mode: str | None = None
    permissions: Policy = "ask"
    ro_paths: list[str] = Field(default_factory=list)

    def resolved_command(self) -> str | None:
        """The executable's absolute path, or None when it cannot be found (a bare name is
        looked up on the server's PATH, or the agent's own ``env.PATH`` if it sets one)."""
        exe = self.command[0]
        if os.sep in exe:
            path = Path(exe)
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        return shutil.which(exe, path=self.env.get("PATH") or os.environ.get("PATH"))


class Registry:
    """The configured agents, re-read when the file changes. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._agents: dict[str, AgentConfig] = {}
        self.error: str | None = None

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._agents, self.error = None, {}, None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
            tables = data.get("agents", {})
            if not isinstance(tables, dict):
                raise ValueError("[agents] must be a table of tables")
            agents = {}
            for name, body in tables.items():
                if not isinstance(body, dict):
                    raise ValueError(f"agents.{name} must be a table")
                agents[name] = AgentConfig(name=name, **body)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as e:
            # ValidationError is a ValueError: the first problem, with its location.
            if isinstance(e, ValidationError):
                err = e.errors()[0]
                where = ".".join(str(x) for x in err["loc"])
                message = f"{self.path}: agents.{where}: {err['msg']}"
            else:
                message = f"{self.path}: {e}"
            log.error("agents file not loaded: %s", message)
            self._agents, self.error = {}, message
            return
        self._agents, self.error = agents, None
        log.info("agents file %s: %s", self.path, ", ".join(sorted(agents)) or "no agents")

    def all(self) -> list[AgentConfig]:
        with self._lock:
            self._load()
            return [self._agents[name] for name in sorted(self._agents)]

    def get(self, name: str) -> AgentConfig | None:
        with self._lock:
            self._load()
            return self._agents.get(name)


def describe(agent: AgentConfig, info: dict[str, Any] | None, *, admin: bool) -> dict[str, Any]:
    """The agent as ``GET /v1/agents`` shows it (``command`` and ``env`` to admins only)."""
    exe = agent.resolved_command()
    out: dict[str, Any] = {
        "name": agent.name,
        "description": agent.description,
        "available": exe is not None,
        "error": None if exe else f"command not found: {agent.command[0]}",
        "defaultMode": agent.default_mode,
        "permissions": agent.permissions,
        "modes": info.get("modes") if info else None,
        "capabilities": info.get("capabilities") if info else None,
    }
    if admin:
        out["command"] = agent.command
        out["env"] = agent.env
    return out


# -- what agents announced ------------------------------------------------------------------


def announced(tx: Tx, names: list[str]) -> dict[str, dict[str, Any]]:
    rows = tx.conn.execute(sa.select(t.agent_info).where(t.agent_info.c.name.in_(names)))
    return {r.name: {"modes": r.modes, "capabilities": r.capabilities} for r in rows}


def remember(tx: Tx, name: str, modes: Any, capabilities: Any) -> None:
    """Store what the agent said in ``initialize`` / ``session/new`` (upsert)."""
    values = {"modes": modes, "capabilities": capabilities, "updated_at": tx.now}
    insert = pg_insert if tx.is_postgres else sqlite_insert
    q = insert(t.agent_info).values(name=name, **values)
    tx.conn.execute(q.on_conflict_do_update(index_elements=["name"], set_=values))
