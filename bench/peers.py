"""Comparative bench: sessiond against LangGraph's dev server and OpenCode's server.

Runs the same session load, with the same client (``bench/load.py``'s keep-alive HTTP/1.1
client and measurement loop), against each server in turn, each measured alone on this
machine's loopback interface:

- **LangGraph**: ``langgraph dev`` (``langgraph-cli[inmem]``, the in-memory runtime) with a
  tiny graph (a ``messages`` list with the ``add_messages`` reducer, one no-op node, no
  LLM), installed into ``.cache/peers/langgraph`` (``python3 -m venv`` + ``pip install -r
  bench/peers-langgraph.txt``, every version pinned);
- **OpenCode**: ``opencode serve`` when an ``opencode`` binary is found (``--opencode``,
  ``$SESSIOND_TEST_OPENCODE``, else ``.cache/opencode/bin/opencode`` as installed by
  ``tests/support/install_opencode.sh``), started with the tests' offline environment;
- **sessiond**: ``sessiond serve --no-access-log`` (SQLite, defaults) on a fresh data dir.

Operations (each at 1 and 16 connections, ``--ops`` measured requests per row after
``--warmup-ops`` unmeasured ones): create session, get session, list 100 sessions, append
message, read messages, delete session. It prints one table, servers side by side, with
ops/s and p50 / p99 per cell and the ratio sessiond ÷ LangGraph (ops/s), the versions, and
the CPU the rest of the machine (and the hypervisor: steal) took during each server's run.

Run on demand, never by the test suite::

    .venv/bin/python bench/peers.py                          # everything, defaults
    .venv/bin/python bench/peers.py --ops 200 --seed 256     # a quick look
    .venv/bin/python bench/peers.py --servers sessiond,langgraph --only get,list --json /tmp/p.json

See ``bench/README.md`` (section "Peers") for the mapping of each operation on each server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# bench/ is not a package: ``python bench/peers.py`` has it on sys.path already.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import load  # noqa: E402  (client, measurement loop, sessiond server, /proc helpers)

CACHE = REPO / ".cache" / "peers"
LANGGRAPH_REQUIREMENTS = HERE / "peers-langgraph.txt"
OPENCODE_SUPPORT = REPO / "tests" / "support" / "opencode.py"

# Table order, and the order they run in on each server: ``list`` sees exactly the seeded
# sessions; ``get`` runs before the appends (LangGraph's thread carries its values);
# ``messages`` reads what ``append`` wrote; ``create`` and ``delete`` come last.
OPS: tuple[str, ...] = ("create", "get", "list", "append", "messages", "delete")
EXECUTION_ORDER: tuple[str, ...] = ("list", "get", "append", "messages", "create", "delete")
OP_TITLES = {
    "create": "create session",
    "get": "get session",
    "list": "list 100 sessions",
    "append": "append message",
    "messages": "read messages",
    "delete": "delete session",
}
SERVERS: tuple[str, ...] = ("langgraph", "opencode", "sessiond")
SERVER_TITLES = {"langgraph": "LangGraph", "opencode": "OpenCode", "sessiond": "sessiond"}
LIST_LIMIT = 100
PAGE_LIMIT = 50
STRIDE = load.TARGET_CONNECTIONS  # connection w walks ids w, w + 16, w + 32, ...
CHECK_ERRORS: tuple[type[BaseException], ...] = (*load.CONNECTION_ERRORS, TimeoutError)
LANGGRAPH_KEY_PACKAGES = (
    "langgraph-cli",
    "langgraph-api",
    "langgraph-runtime-inmem",
    "langgraph",
    "langgraph-checkpoint",
    "langchain-core",
    "uvicorn",
    "starlette",
    "uvloop",
    "orjson",
)

GRAPH_PY = '''\
"""bench/peers.py's graph for `langgraph dev`: a `messages` list, one no-op node, no LLM.

Written by bench/peers.py (rewritten on every run)."""

from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages


class State(TypedDict):
    messages: Annotated[list, add_messages]


def noop(state: State) -> dict:
    return {}


builder = StateGraph(State)
builder.add_node("noop", noop)
builder.add_edge(START, "noop")
builder.add_edge("noop", END)
graph = builder.compile()
'''
GRAPH_ID = "bench"
GRAPH_NODE = "noop"

# --------------------------------------------------------------------------------------
# Machine CPU (/proc/stat): the rest of the machine and the hypervisor's steal
# --------------------------------------------------------------------------------------


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine, all cores (/proc/stat).

    busy = user + nice + system + irq + softirq; steal = time the hypervisor did not give
    this VM's CPUs."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    steal = fields[7] if len(fields) > 7 else 0
    return busy / load._CLK_TCK, steal / load._CLK_TCK


# --------------------------------------------------------------------------------------
# Processes (LangGraph, OpenCode): started in their own session, stopped by PID
# --------------------------------------------------------------------------------------


class PeerProcess:
    """One server process: output to a log file, its own session, stopped by PID."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_http(self, port: int, path: str, timeout: float) -> None:
        """Poll ``GET path`` on loopback until it answers 200."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        raw = load.RequestBuilder("127.0.0.1", port, None).get(path, auth=False)
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"exited with code {self.proc.returncode} during startup\n" + self.log_tail()
                )
            conn = load.HttpConnection("127.0.0.1", port)
            try:
                status, body = await asyncio.wait_for(conn.request(raw), 10)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:100]!r}"
            except CHECK_ERRORS as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            await asyncio.sleep(0.2)
        raise RuntimeError(
            f"not ready after {timeout:g} s (GET {path}: {last})\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "--- server log (tail) ---\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``timeout``; then SIGKILL, by PID, any process it
        started that is still alive in its session."""
        if self.proc is None:
            return None
        pid = self.proc.pid
        try:
            descendants = load.process_tree(pid)[1:]
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    self.proc.wait(5)
            for child in descendants:
                with contextlib.suppress(OSError):
                    if os.getsid(child) == pid:  # still ours (its session), not a reused PID
                        os.kill(child, signal.SIGKILL)
            return self.proc.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


# --------------------------------------------------------------------------------------
# The servers: how each one is started and how each operation maps to its API
# --------------------------------------------------------------------------------------


class Peer:
    """A server under test: start/stop, and one request per operation."""

    key = ""
    expected: dict[str, int] = {}

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.port = load.free_loopback_port()
        self.builder = load.RequestBuilder("127.0.0.1", self.port, None)
        self.versions: dict[str, str] = {}
        self.command: list[str] = []

    @property
    def title(self) -> str:
        return SERVER_TITLES[self.key]

    # lifecycle
    async def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> int | None:
        raise NotImplementedError

    def pid(self) -> int | None:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def log_tail(self) -> str:
        raise NotImplementedError

    # requests
    def create(self, n: int) -> bytes:
        raise NotImplementedError

    def created_id(self, body: bytes) -> str:
        raise NotImplementedError

    def get(self, sid: str) -> bytes:
        raise NotImplementedError

    def list(self) -> bytes:
        raise NotImplementedError

    def append(self, sid: str, n: int) -> bytes:
        raise NotImplementedError

    def messages(self, sid: str) -> bytes:
        raise NotImplementedError

    def delete(self, sid: str) -> bytes:
        raise NotImplementedError

    def check(self, op: str, status: int, body: bytes) -> str | None:
        """One response of ``op`` checked before measuring: a problem or None."""
        want = self.expected[op]
        if status != want:
            return f"{op}: HTTP {status} (expected {want}): {body[:300]!r}"
        if op == "delete":
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return f"{op}: body is not JSON: {body[:300]!r}"
        return self.check_doc(op, doc, body)

    def check_doc(self, op: str, doc: Any, body: bytes) -> str | None:
        raise NotImplementedError


def _tags(n: int) -> list[str]:
    return ["bench", f"t{n % 8}"]


class SessiondPeer(Peer):
    """``sessiond serve --no-access-log`` (SQLite, defaults), via load.ManagedServer."""

    key = "sessiond"
    expected = {
        "create": 201,
        "get": 200,
        "list": 200,
        "append": 201,
        "messages": 200,
        "delete": 204,
    }

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        super().__init__(args, tmp)
        extra = ["--no-access-log", *args.sessiond_arg]
        self.server = load.ManagedServer(load.find_sessiond(args.sessiond), extra, args.keep_data)
        self.port = self.server.port
        self.command = [self.server.executable, "serve", "--host", "127.0.0.1", *extra]
        self.versions = sessiond_versions()

    async def start(self) -> None:
        self.server.start()
        key = await self.server.wait_ready(self.args.startup_timeout)
        self.builder = load.RequestBuilder("127.0.0.1", self.port, key)

    def stop(self) -> int | None:
        return self.server.stop()

    def pid(self) -> int | None:
        return self.server.proc.pid if self.server.proc is not None else None

    def alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    def log_tail(self) -> str:
        return self.server.log_tail()

    def create(self, n: int) -> bytes:
        return self.builder.with_body("POST", "/v1/sessions", load.session_body(n, "bench"))

    def created_id(self, body: bytes) -> str:
        return str(json.loads(body)["session"]["id"])

    def get(self, sid: str) -> bytes:
        return self.builder.get(f"/v1/sessions/{sid}")

    def list(self) -> bytes:
        return self.builder.get(f"/v1/sessions?limit={LIST_LIMIT}")

    def append(self, sid: str, n: int) -> bytes:
        return self.builder.with_body("POST", f"/v1/sessions/{sid}/messages", load.append_body(n))

    def messages(self, sid: str) -> bytes:
        return self.builder.get(f"/v1/sessions/{sid}/messages?limit={PAGE_LIMIT}")

    def delete(self, sid: str) -> bytes:
        return self.builder.bare("DELETE", f"/v1/sessions/{sid}")

    def check_doc(self, op: str, doc: Any, body: bytes) -> str | None:
        if op in ("create", "get"):
            sid = doc.get("session", {}).get("id") if isinstance(doc, dict) else None
            if not isinstance(sid, str):
                return f"{op}: no session.id in {body[:300]!r}"
        elif op == "list":
            items = doc.get("sessions") if isinstance(doc, dict) else None
            if not isinstance(items, list) or len(items) != LIST_LIMIT:
                return f"list: expected {LIST_LIMIT} sessions in {body[:300]!r}"
        elif op == "append":
            if not isinstance(doc, dict) or not isinstance(doc.get("message"), dict):
                return f"append: no message in {body[:300]!r}"
        elif op == "messages":
            items = doc.get("messages") if isinstance(doc, dict) else None
            if not isinstance(items, list) or not items:
                return f"messages: no messages in {body[:300]!r}"
        return None


class LangGraphPeer(Peer):
    """``langgraph dev`` (in-memory runtime) on the tiny graph; a session is a thread."""

    key = "langgraph"
    expected = {
        "create": 200,
        "get": 200,
        "list": 200,
        "append": 200,
        "messages": 200,
        "delete": 204,
    }

    def __init__(self, args: argparse.Namespace, tmp: Path, cache: Path) -> None:
        super().__init__(args, tmp)
        self.cache = cache
        self.workdir = tmp / "cwd"  # `.langgraph_api/` (its pickled state) goes here
        self.process: PeerProcess | None = None
        self.command = [
            str(cache / "bin" / "langgraph"),
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--config",
            str(cache / "langgraph.json"),
        ]
        self.versions = langgraph_versions(cache)

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_"))
            and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
        }
        env.update(
            LANGGRAPH_CLI_NO_ANALYTICS="1",  # the CLI's usage ping
            LANGGRAPH_NO_VERSION_CHECK="true",  # the check for a newer langgraph-api on PyPI
            LANGSMITH_TRACING="false",
            LANGCHAIN_TRACING_V2="false",
            DO_NOT_TRACK="1",
            NO_COLOR="1",
            PYTHONUNBUFFERED="1",
        )
        self.process = PeerProcess(self.command, env, self.workdir, self.tmp / "langgraph.log")
        self.process.start()
        await self.process.wait_http(self.port, "/ok", self.args.startup_timeout)

    def stop(self) -> int | None:
        return self.process.stop() if self.process is not None else None

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process is not None else "(not started)"

    def create(self, n: int) -> bytes:
        # graph_id in the metadata assigns the thread to the graph: a state update needs
        # one (else 400 "has no assigned graph ID"; normally a run assigns it).
        meta = {
            "graph_id": GRAPH_ID,
            "title": f"bench {n}",
            "tags": _tags(n),
            "n": n,
            "source": "bench/peers.py",
        }
        return self.builder.with_body("POST", "/threads", _json({"metadata": meta}))

    def created_id(self, body: bytes) -> str:
        return str(json.loads(body)["thread_id"])

    def get(self, sid: str) -> bytes:
        return self.builder.get(f"/threads/{sid}")

    def list(self) -> bytes:
        return self.builder.with_body("POST", "/threads/search", _json({"limit": LIST_LIMIT}))

    def append(self, sid: str, n: int) -> bytes:
        # A state update as if node `noop` had returned the message: the add_messages
        # reducer appends it and a new checkpoint is written (the thread stays idle).
        kind = ("human", "ai")[n % 2]  # the same alternation as sessiond's user/assistant
        message = {"type": kind, "content": load.message_text(n)}
        body = {"values": {"messages": [message]}, "as_node": GRAPH_NODE}
        return self.builder.with_body("POST", f"/threads/{sid}/state", _json(body))

    def messages(self, sid: str) -> bytes:
        return self.builder.get(f"/threads/{sid}/state")

    def delete(self, sid: str) -> bytes:
        return self.builder.bare("DELETE", f"/threads/{sid}")

    def check_doc(self, op: str, doc: Any, body: bytes) -> str | None:
        if op in ("create", "get"):
            if not isinstance(doc, dict) or not isinstance(doc.get("thread_id"), str):
                return f"{op}: no thread_id in {body[:300]!r}"
        elif op == "list":
            if not isinstance(doc, list) or len(doc) != LIST_LIMIT:
                return f"list: expected {LIST_LIMIT} threads in {body[:300]!r}"
        elif op == "append":
            if not isinstance(doc, dict) or "checkpoint" not in doc:
                return f"append: no checkpoint in {body[:300]!r}"
        elif op == "messages":
            values = doc.get("values") if isinstance(doc, dict) else None
            items = values.get("messages") if isinstance(values, dict) else None
            if not isinstance(items, list) or not items:
                return f"messages: no values.messages in {body[:300]!r}"
        return None


class OpenCodePeer(Peer):
    """``opencode serve`` with the tests' offline environment; sessions over its HTTP API."""

    key = "opencode"
    expected = {
        "create": 200,
        "get": 200,
        "list": 200,
        "append": 200,
        "messages": 200,
        "delete": 200,
    }

    def __init__(self, args: argparse.Namespace, tmp: Path, binary: str, support: Any) -> None:
        super().__init__(args, tmp)
        self.binary = binary
        self.support = support
        self.process: PeerProcess | None = None
        self.command = [binary, "serve", "--hostname", "127.0.0.1", "--port", str(self.port)]
        self.versions = {"opencode": opencode_version(binary)}

    async def start(self) -> None:
        home = self.tmp / "home"
        project = self.tmp / "project"  # its working directory: the sessions' project
        for d in (home, project):
            d.mkdir(parents=True, exist_ok=True)
        # The tests' environment: the mock model as the only provider (its URL is never
        # called: appends do not run the model) and every network feature off. HOME and
        # the XDG dirs are private, so its database (SQLite) starts empty.
        env = self.support.opencode_env(self.tmp / "config", "http://127.0.0.1:9/v1")
        env.update(
            HOME=str(home),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_STATE_HOME=str(home / ".local" / "state"),
        )
        self.process = PeerProcess(self.command, env, project, self.tmp / "opencode.log")
        self.process.start()
        await self.process.wait_http(self.port, "/global/health", self.args.startup_timeout)

    def stop(self) -> int | None:
        return self.process.stop() if self.process is not None else None

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process is not None else "(not started)"

    def create(self, n: int) -> bytes:
        # No tags field (the body schema is closed): they go into metadata.
        meta = {"n": n, "tags": _tags(n), "source": "bench/peers.py"}
        return self.builder.with_body(
            "POST", "/session", _json({"title": f"bench {n}", "metadata": meta})
        )

    def created_id(self, body: bytes) -> str:
        return str(json.loads(body)["id"])

    def get(self, sid: str) -> bytes:
        return self.builder.get(f"/session/{sid}")

    def list(self) -> bytes:
        return self.builder.get(f"/session?limit={LIST_LIMIT}")

    def append(self, sid: str, n: int) -> bytes:
        # A prompt with noReply: the user message is stored, the model is not run. Its API
        # has no way to add an assistant message without running the model: all are user's.
        body = {"noReply": True, "parts": [{"type": "text", "text": load.message_text(n)}]}
        return self.builder.with_body("POST", f"/session/{sid}/message", _json(body))

    def messages(self, sid: str) -> bytes:
        return self.builder.get(f"/session/{sid}/message?limit={PAGE_LIMIT}")

    def delete(self, sid: str) -> bytes:
        return self.builder.bare("DELETE", f"/session/{sid}")

    def check_doc(self, op: str, doc: Any, body: bytes) -> str | None:
        if op in ("create", "get"):
            if not isinstance(doc, dict) or not str(doc.get("id", "")).startswith("ses"):
                return f"{op}: no session id in {body[:300]!r}"
        elif op == "list":
            if not isinstance(doc, list) or len(doc) != LIST_LIMIT:
                return f"list: expected {LIST_LIMIT} sessions in {body[:300]!r}"
        elif op == "append":
            info = doc.get("info") if isinstance(doc, dict) else None
            if not isinstance(info, dict) or info.get("role") != "user":
                return f"append: no user message in {body[:300]!r}"
        elif op == "messages" and (not isinstance(doc, list) or not doc):
            return f"messages: no messages in {body[:300]!r}"
        return None


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------
# Installs and versions
# --------------------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float, log: Path | None = None) -> str:
    out = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        text=True,
        check=False,
    )
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{out.stdout}\n")
    if out.returncode != 0:
        tail = "\n".join(out.stdout.splitlines()[-20:])
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {out.returncode}):\n{tail}")
    return out.stdout


def ensure_langgraph(cache: Path, python: str, reinstall: bool) -> None:
    """The venv in ``cache`` with bench/peers-langgraph.txt installed, and the graph.

    Installs only when the requirements changed since the last install (a stamp file)."""
    requirements = LANGGRAPH_REQUIREMENTS.read_text()
    digest = hashlib.sha256(requirements.encode()).hexdigest()
    stamp = cache / ".installed"
    venv_python = cache / "bin" / "python"
    log = cache.parent / "langgraph-install.log"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not venv_python.exists():
        print(f"creating the LangGraph venv: {python} -m venv {cache}", flush=True)
        _run([python, "-m", "venv", str(cache)], 300, log)
    current = stamp.read_text().strip() if stamp.exists() else ""
    if reinstall or current != digest:
        print(
            f"installing LangGraph's dev server into {cache} (pip install -r "
            f"{LANGGRAPH_REQUIREMENTS.relative_to(REPO)}; log {log}) ...",
            flush=True,
        )
        t0 = time.perf_counter()
        _run(
            [
                str(venv_python),
                "-m",
                "pip",
                "install",
                "--no-input",
                "-r",
                str(LANGGRAPH_REQUIREMENTS),
            ],
            1800,
            log,
        )
        stamp.write_text(digest + "\n")
        print(f"  installed in {time.perf_counter() - t0:.0f} s", flush=True)
    (cache / "graph.py").write_text(GRAPH_PY)
    config = {
        "dependencies": [str(cache)],
        "graphs": {GRAPH_ID: f"{cache / 'graph.py'}:graph"},
        "env": {},
    }
    (cache / "langgraph.json").write_text(json.dumps(config, indent=2) + "\n")


def langgraph_versions(cache: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform\n"
        f"names = {list(LANGGRAPH_KEY_PACKAGES)!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try:\n"
        "        out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        out[n] = 'missing'\n"
        "out['python'] = platform.python_version()\n"
        "print(json.dumps(out))\n"
    )
    try:
        return dict(json.loads(_run([str(cache / "bin" / "python"), "-c", code], 60)))
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)[:200]}


def opencode_version(binary: str) -> str:
    try:
        return _run([binary, "--version"], 60).strip().splitlines()[-1]
    except (RuntimeError, OSError, IndexError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"[:200]


def sessiond_versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    try:
        out["sessiond"] = importlib.metadata.version("sessiond")
    except importlib.metadata.PackageNotFoundError:
        out["sessiond"] = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            # --no-optional-locks: a read, no index refresh written
            [
                "git",
                "--no-optional-locks",
                "-C",
                str(REPO),
                "status",
                "--porcelain",
                "-uno",
                "--",
                "src",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        if head:
            out["git"] = head + (" + uncommitted changes in src/" if dirty else "")
    with contextlib.suppress(ImportError, AttributeError):
        import sqlite3

        out["sqlite"] = sqlite3.sqlite_version
    return out


def load_opencode_support() -> Any:
    """tests/support/opencode.py (its offline environment), loaded by path."""
    spec = importlib.util.spec_from_file_location("_sessiond_opencode_support", OPENCODE_SUPPORT)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {OPENCODE_SUPPORT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------
# Running the operations on one server
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One operation at one connection count on one server."""

    server: str
    op: str
    connections: int
    result: load.Result | None = None
    timed_out: bool = False
    warmup_errors: int = 0
    check_problem: str | None = None
    note: str = ""
    other_cpu_pct: float | None = None
    steal_cpu_pct: float | None = None

    @property
    def failed(self) -> bool:
        """Errors, a failed check, or no figures at all. A row that ran out of time with
        figures is not failed: its figures cover the requests it completed."""
        return (
            self.check_problem is not None
            or self.result is None
            or self.result.ok == 0
            or self.result.errors > 0
        )


@dataclass
class ServerRun:
    key: str
    available: bool = True
    reason: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    seeded: int = 0
    seed_s: float = 0.0
    appended: int = 0
    rss_mb: float | None = None
    peak_rss_mb: float | None = None
    wall_s: float = 0.0
    other_cpu_pct: float | None = None
    steal_cpu_pct: float | None = None
    exit_code: int | None = None
    error: str | None = None


async def create_many(peer: Peer, count: int, timeout: float) -> list[str]:
    """Create ``count`` sessions over 16 connections (untimed); their ids, in order."""
    ids: list[str | None] = [None] * count
    failures: list[str] = []
    next_n = 0

    async def work(conn: load.HttpConnection) -> None:
        nonlocal next_n
        while next_n < count and len(failures) < 20:
            n = next_n
            next_n += 1
            try:
                status, body = await conn.request(peer.create(n))
            except load.CONNECTION_ERRORS as exc:
                conn.close()
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if status != peer.expected["create"]:
                failures.append(f"HTTP {status}: {body[:200]!r}")
                continue
            try:
                ids[n] = peer.created_id(body)
            except (ValueError, KeyError, TypeError):
                failures.append(f"unexpected create body: {body[:200]!r}")

    conns = await load.open_connections("127.0.0.1", peer.port, min(STRIDE, max(1, count)))
    try:
        await asyncio.wait_for(asyncio.gather(*(work(c) for c in conns)), timeout)
    except TimeoutError as exc:
        made = sum(1 for i in ids if i is not None)
        raise RuntimeError(
            f"creating {count} sessions: timed out after {timeout:g} s ({made} made)"
        ) from exc
    finally:
        for c in conns:
            c.close()
    if failures:
        raise RuntimeError(
            f"creating {count} sessions: {len(failures)} failures; first: {failures[0]}"
        )
    return [i for i in ids if i is not None]


def make_factory(peer: Peer, op: str, ids: list[str], pool: load.IdPool) -> load.RequestFactory:
    """The request of (connection, iteration) for ``op``: pre-encoded where it can be."""
    if op == "create":
        counter = [1_000_000]

        def create(worker: int, it: int) -> bytes:
            counter[0] += 1
            return peer.create(counter[0])

        return create
    if op == "list":
        raw = peer.list()
        return lambda worker, it: raw
    if op == "delete":
        return lambda worker, it: peer.delete(pool.take())
    if op == "get":
        reqs = [peer.get(sid) for sid in ids]
        n = len(reqs)
        return lambda worker, it: reqs[(worker + it * STRIDE) % n]
    # append / messages: the first --conversations sessions, connection w on its own ones
    # (w, w + 16, ...; a multiple of 16, so no two connections share a session).
    conv = ids[: peer.args.conversations]
    if op == "messages":
        reqs = [peer.messages(sid) for sid in conv]
        n = len(reqs)
        return lambda worker, it: reqs[(worker + it * STRIDE) % n]
    if op == "append":
        n = len(conv)
        return lambda worker, it: peer.append(conv[(worker + it * STRIDE) % n], it)
    raise ValueError(op)


async def run_row(
    peer: Peer,
    op: str,
    connections: int,
    factory: load.RequestFactory,
    args: argparse.Namespace,
) -> Row:
    """Warm-up (unmeasured), then ``--ops`` measured requests; bounded by --row-timeout."""
    row = Row(server=peer.key, op=op, connections=connections)
    pid = peer.pid()

    def server_pids() -> list[int]:
        return load.process_tree(pid) if pid is not None else []

    start = time.monotonic()
    deadline = start + args.row_timeout
    expected = peer.expected[op]

    async def body() -> None:
        if args.warmup_ops > 0:
            warm = await load.run_scenario(
                op,
                connections,
                "127.0.0.1",
                peer.port,
                factory,
                seconds=max(0.1, deadline - time.monotonic()),
                max_requests=args.warmup_ops,
                warmup=0.0,
                server_pids=lambda: [],
                expected=expected,
            )
            row.warmup_errors = warm.errors
            if warm.errors:
                row.note = f"warm-up errors: {warm.error_samples[:1]}"
        busy0, steal0 = machine_cpu_s()
        t0 = time.perf_counter()
        res = await load.run_scenario(
            op,
            connections,
            "127.0.0.1",
            peer.port,
            factory,
            seconds=max(0.1, deadline - time.monotonic()),
            max_requests=args.ops,
            warmup=0.0,
            server_pids=server_pids,
            expected=expected,
        )
        wall = time.perf_counter() - t0
        busy1, steal1 = machine_cpu_s()
        row.result = res
        if wall > 0:
            machine = 100.0 * (busy1 - busy0) / wall
            own = (res.server_cpu_pct or 0.0) + (res.driver_cpu_pct or 0.0)
            row.other_cpu_pct = max(0.0, machine - own)
            row.steal_cpu_pct = 100.0 * (steal1 - steal0) / wall
        if res.requests < args.ops:
            row.timed_out = True
            row.note = (
                f"row timeout: {res.requests:,} of {args.ops:,} requests in {args.row_timeout:g} s"
            )

    try:
        # The loop stops itself at the deadline; this bounds a request that never answers.
        await asyncio.wait_for(body(), args.row_timeout + 15)
    except TimeoutError:
        row.timed_out = True
        row.note = f"row timeout: no complete result within {args.row_timeout + 15:g} s"
    return row


async def run_server(peer: Peer, args: argparse.Namespace, run: ServerRun) -> None:
    """Start ``peer``, seed it, run every row, record its memory; stop it in ``finally``."""
    started = time.perf_counter()
    steal0 = machine_cpu_s()[1]
    try:
        print(f"\n== {peer.title}: {' '.join(peer.command)}", flush=True)
        await peer.start()
        print(f"   ready, pid {peer.pid()} on 127.0.0.1:{peer.port}", flush=True)
        pid = peer.pid()
        ids: list[str] = []
        if any(op in args.ops_list for op in ("get", "list", "append", "messages")):
            t0 = time.perf_counter()
            ids = await create_many(peer, args.seed, args.seed_timeout)
            run.seed_s = time.perf_counter() - t0
            run.seeded = len(ids)
            print(
                f"   seeded {len(ids):,} sessions in {run.seed_s:.1f} s "
                f"({len(ids) / max(run.seed_s, 1e-9):,.0f}/s)",
                flush=True,
            )
        pool = load.IdPool(missing=peer_missing_id(peer))
        for op in [o for o in EXECUTION_ORDER if o in args.ops_list]:
            factory = make_factory(peer, op, ids, pool)
            checked = False
            for n in args.conn_counts:
                if not peer.alive():
                    raise RuntimeError(f"{peer.title} died during the run\n" + peer.log_tail())
                if op == "delete":
                    # Untimed: the sessions this row deletes (+1 for the response check).
                    pool.refill(
                        await create_many(peer, args.warmup_ops + args.ops + 1, args.seed_timeout)
                    )
                problem = None
                if not checked:
                    conn = load.HttpConnection("127.0.0.1", peer.port)
                    try:
                        status, body = await asyncio.wait_for(conn.request(factory(0, 0)), 30)
                        problem = peer.check(op, status, body)
                    except CHECK_ERRORS as exc:
                        problem = f"{op}: {type(exc).__name__}: {exc}"
                    finally:
                        conn.close()
                    checked = True
                    if op == "append":
                        run.appended += 1
                    if problem:
                        load.loud(
                            f"{peer.title}: RESPONSE CHECK FAILED before measuring: {problem}"
                        )
                row = await run_row(peer, op, n, factory, args)
                row.check_problem = problem
                run.rows.append(row)
                if op == "append" and row.result is not None:
                    run.appended += args.warmup_ops + row.result.requests
                print("   " + progress_line(row), flush=True)
                await asyncio.sleep(0.2)
            if op == "append" and args.conversations and run.appended:
                print(
                    f"   ({run.appended:,} messages over {min(args.conversations, len(ids))} "
                    f"sessions: ~{run.appended / min(args.conversations, len(ids)):.0f} each)",
                    flush=True,
                )
        if pid is not None:
            per_proc = {p: load.read_memory_kb(p) for p in load.process_tree(pid)}
            rss = sum(m.get("VmRSS", 0) for m in per_proc.values())
            hwm = sum(m.get("VmHWM", 0) for m in per_proc.values())
            if rss:
                run.rss_mb, run.peak_rss_mb = rss / 1024, hwm / 1024
    except Exception as exc:  # the other servers still run; reported loudly at the end
        run.error = f"{type(exc).__name__}: {exc}"
        load.loud(f"{peer.title} failed: {run.error}")
    finally:
        run.exit_code = peer.stop()
        run.wall_s = time.perf_counter() - started
        steal1 = machine_cpu_s()[1]
        if run.wall_s > 0:
            # Over the whole run of this server (seeding included): % of one core.
            run.steal_cpu_pct = 100.0 * (steal1 - steal0) / run.wall_s
            measured = [r.other_cpu_pct for r in run.rows if r.other_cpu_pct is not None]
            run.other_cpu_pct = sum(measured) / len(measured) if measured else None


def peer_missing_id(peer: Peer) -> str:
    """An id that names no session on ``peer`` (a delete past the pool fails: 404)."""
    return {
        "sessiond": "ses_00000000000000000000000000",
        "langgraph": "00000000-0000-0000-0000-000000000000",
        "opencode": "ses_000000000000000000000000000",
    }[peer.key]


def progress_line(row: Row) -> str:
    r = row.result
    if r is None:
        return f"{row.op:<8} x{row.connections:<3} {row.note}"
    line = (
        f"{row.op:<8} x{row.connections:<3} {r.ops_per_s:>8,.0f} ops/s  "
        f"p50 {load._fmt_ms(r.p50_ms)} ms  p99 {load._fmt_ms(r.p99_ms)} ms  errors {r.errors}"
        f"  srv cpu {load._fmt_pct(r.server_cpu_pct)}  other cpu {load._fmt_pct(row.other_cpu_pct)}"
    )
    if row.note:
        line += f"  ({row.note})"
    return line


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def cell(run: ServerRun | None, op: str, conns: int) -> str:
    if run is None:
        return "—"  # not selected (--servers)
    if not run.available:
        return "n/a"
    row = next((r for r in run.rows if r.op == op and r.connections == conns), None)
    if row is None:
        return "failed" if run.error else "—"
    r = row.result
    if r is None or not r.ok:
        if r is not None and r.errors:
            return f"**{r.errors:,} errors of {r.requests:,}**"
        return f"**{row.note or 'no result'}**"
    text = f"{r.ops_per_s:,.0f}/s · {load._fmt_ms(r.p50_ms)} / {load._fmt_ms(r.p99_ms)} ms"
    if r.errors:
        text += f" **{r.errors} errors**"
    if row.timed_out:
        text += f" **timeout ({r.requests:,} done)**"
    if row.check_problem:
        text += " **check failed**"
    return text


def ratio(runs: dict[str, ServerRun], op: str, conns: int) -> str:
    def ops(key: str) -> float | None:
        run = runs.get(key)
        if run is None or not run.available:
            return None
        row = next((r for r in run.rows if r.op == op and r.connections == conns), None)
        if row is None or row.result is None or row.failed or not row.result.ops_per_s:
            return None
        return row.result.ops_per_s

    ours, theirs = ops("sessiond"), ops("langgraph")
    if ours is None or theirs is None:
        return "—"
    return f"{ours / theirs:.2f}×"  # noqa: RUF001


def table_lines(runs: dict[str, ServerRun], args: argparse.Namespace) -> list[str]:
    head = ["op", "conns", *(SERVER_TITLES[k] for k in SERVERS), "sessiond ÷ LangGraph"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in OPS:
        if op not in args.ops_list:
            continue
        for n in args.conn_counts:
            cells = [OP_TITLES[op], str(n), *(cell(runs.get(k), op, n) for k in SERVERS)]
            cells.append(ratio(runs, op, n))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def version_line(run: ServerRun) -> str:
    v = run.versions
    if run.key == "sessiond":
        parts = [f"sessiond {v.get('sessiond', '?')}"]
        if v.get("git"):
            parts.append(f"git {v['git']}")
        parts.append(f"Python {v.get('python', '?')}, SQLite {v.get('sqlite', '?')}")
        return ", ".join(parts)
    if run.key == "langgraph":
        if "error" in v:
            return f"versions unknown: {v['error']}"
        pkgs = ", ".join(f"{k} {v[k]}" for k in LANGGRAPH_KEY_PACKAGES if k in v)
        return f"{pkgs}; Python {v.get('python', '?')}"
    return f"opencode {v.get('opencode', '?')}"


def print_report(
    runs: dict[str, ServerRun], args: argparse.Namespace, meta: dict[str, Any]
) -> None:
    print()
    print(
        f"peers bench — {args.ops:,} measured requests per row after {args.warmup_ops:,} "
        f"unmeasured, {args.seed:,} seeded sessions, loopback, loop {meta['loop']}, "
        f"{meta['cpus']} CPUs"
    )
    print(
        "each cell: ops/s · p50 / p99 ms (client side); last column: ops/s of sessiond ÷ LangGraph"
    )
    print()
    for line in table_lines(runs, args):
        print(line)
    print()
    for key in SERVERS:
        run = runs.get(key)
        if run is None:
            continue
        title = SERVER_TITLES[key]
        if not run.available:
            print(f"{title}: n/a — {run.reason}")
            continue
        print(f"{title}: {version_line(run)}")
        bits = [f"{run.wall_s:.0f} s"]
        if run.rss_mb is not None:
            bits.append(f"RSS at the end {run.rss_mb:.1f} MB (peak {run.peak_rss_mb:.1f} MB)")
        if run.other_cpu_pct is not None:
            bits.append(f"other cpu {run.other_cpu_pct:.0f}%")
        if run.steal_cpu_pct is not None:
            bits.append(f"cpu steal {run.steal_cpu_pct:.0f}%")
        print("   " + ", ".join(bits))
        if run.error:
            print(f"   FAILED: {run.error.splitlines()[0]}")
    print(
        "(other cpu: CPU the rest of the machine used during the measured rows, mean, % of "
        "one core — other processes than the server and this driver; cpu steal: time the "
        "hypervisor took from this VM during the server's run, % of one core)"
    )


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--ops", type=int, default=2000, help="measured requests per row")
    p.add_argument(
        "--warmup-ops", type=int, default=100, help="unmeasured requests before each row"
    )
    p.add_argument("--connections", default="1,16", help="comma-separated connection counts")
    p.add_argument("--only", default=None, help="comma-separated subset of: " + ",".join(OPS))
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of: " + ",".join(SERVERS),
    )
    p.add_argument("--seed", type=int, default=4000, help="sessions created before the rows")
    p.add_argument(
        "--conversations",
        type=int,
        default=128,
        help="the first N seeded sessions get the appends and are read back (multiple of 16)",
    )
    p.add_argument(
        "--row-timeout",
        type=float,
        default=120.0,
        help="seconds per row (warm-up + measured); a row out of time reports what it did",
    )
    p.add_argument(
        "--seed-timeout",
        type=float,
        default=600.0,
        help="seconds for the seeding, and for the sessions made before each delete row",
    )
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument("--json", dest="json_path", default=None, help="also write raw figures here")
    p.add_argument(
        "--cache", default=str(CACHE), help="cache dir (LangGraph venv in CACHE/langgraph)"
    )
    p.add_argument("--python", default="python3", help="Python (>= 3.11) for the LangGraph venv")
    p.add_argument("--reinstall", action="store_true", help="pip install the LangGraph pins again")
    p.add_argument("--opencode", default=None, help="opencode binary (default: the tests' one)")
    p.add_argument("--sessiond", default=None, help="sessiond executable (default: the venv's)")
    p.add_argument(
        "--sessiond-arg",
        action="append",
        default=[],
        help="extra argument for `sessiond serve` (repeatable, e.g. --sessiond-arg=--workers=2)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the temp dirs and server logs")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    args = p.parse_args(argv)
    if args.only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(OPS))
        if unknown:
            p.error(f"unknown op(s): {', '.join(unknown)}")
        args.ops_list = [o for o in OPS if o in chosen]
    else:
        args.ops_list = list(OPS)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown or not servers:
        p.error(f"--servers takes a subset of {','.join(SERVERS)}")
    args.server_list = [s for s in SERVERS if s in servers]
    try:
        args.conn_counts = sorted({int(c) for c in args.connections.split(",") if c.strip()})
    except ValueError:
        p.error("--connections takes integers, e.g. 1,16")
    if not args.conn_counts or min(args.conn_counts) < 1 or max(args.conn_counts) > STRIDE:
        p.error(f"--connections must be between 1 and {STRIDE}")
    if args.ops < 1 or args.warmup_ops < 0:
        p.error("--ops must be positive, --warmup-ops not negative")
    needs_seed = any(o in args.ops_list for o in ("get", "list", "append", "messages"))
    if needs_seed and args.seed < max(LIST_LIMIT, args.conversations, STRIDE):
        p.error(f"--seed must be at least {max(LIST_LIMIT, args.conversations, STRIDE)}")
    if args.conversations < STRIDE or args.conversations % STRIDE:
        p.error(f"--conversations must be a multiple of {STRIDE}")
    return args


async def bench(args: argparse.Namespace) -> int:
    me = asyncio.current_task()
    if me is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    meta: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "loop": type(asyncio.get_running_loop()).__module__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "ops": args.ops,
        "warmup_ops": args.warmup_ops,
        "seed": args.seed,
        "conversations": args.conversations,
        "connections": args.conn_counts,
        "row_timeout": args.row_timeout,
        "seed_timeout": args.seed_timeout,
    }
    runs: dict[str, ServerRun] = {}
    cache = Path(args.cache).resolve()
    rc = 0
    t_start = time.perf_counter()
    busy0, steal0 = machine_cpu_s()
    for key in args.server_list:
        run = ServerRun(key=key)
        runs[key] = run
        tmp = Path(tempfile.mkdtemp(prefix=f"peers-{key}-"))
        peer: Peer | None = None
        try:
            if key == "langgraph":
                lg_cache = cache / "langgraph"
                try:
                    ensure_langgraph(lg_cache, args.python, args.reinstall)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    run.available, run.reason = False, f"install failed: {exc}"
                    load.loud(f"LangGraph: {run.reason}")
                    rc = 1
                    continue
                peer = LangGraphPeer(args, tmp, lg_cache)
            elif key == "opencode":
                binary = args.opencode
                support = None
                try:
                    support = load_opencode_support()
                    binary = binary or support.find_opencode()
                except Exception as exc:  # a broken support module: no OpenCode column
                    run.available, run.reason = False, f"cannot load {OPENCODE_SUPPORT}: {exc}"
                    continue
                if not binary or not os.access(binary, os.X_OK):
                    run.available = False
                    run.reason = (
                        "no opencode binary (install: bash tests/support/install_opencode.sh "
                        ".cache/opencode, or pass --opencode)"
                    )
                    print(f"\n== OpenCode: n/a — {run.reason}")
                    continue
                peer = OpenCodePeer(args, tmp, binary, support)
            else:
                peer = SessiondPeer(args, tmp)
            run.versions, run.command = peer.versions, peer.command
            await run_server(peer, args, run)
            if run.error:
                rc = 1
        finally:
            if args.keep_data:
                print(f"   temp dir kept: {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    busy1, steal1 = machine_cpu_s()
    wall = time.perf_counter() - t_start
    meta["wall_s"] = wall
    meta["steal_cpu_pct"] = 100.0 * (steal1 - steal0) / wall if wall > 0 else None
    meta["machine_busy_cpu_pct"] = 100.0 * (busy1 - busy0) / wall if wall > 0 else None

    print_report(runs, args, meta)
    failed = [r for run in runs.values() for r in run.rows if r.failed]
    if failed:
        lines = []
        for r in failed:
            res = r.result
            what = (
                r.check_problem
                or (r.note if r.result is None else "")
                or (
                    f"{res.errors} of {res.requests} requests failed; e.g. {res.error_samples[:2]}"
                    if res is not None
                    else "no result"
                )
            )
            lines.append(f"ERRORS: {SERVER_TITLES[r.server]} {r.op} x{r.connections}: {what}")
        load.loud("\n".join(lines))
        rc = 1
    for run in runs.values():
        for r in run.rows:
            if r.timed_out and not r.failed:
                print(f"note: {SERVER_TITLES[r.server]} {r.op} x{r.connections}: {r.note}")
    if args.json_path:
        doc = {
            "meta": meta,
            "table": table_lines(runs, args),
            "servers": {
                key: {
                    **{k: v for k, v in asdict(run).items() if k != "rows"},
                    "rows": [
                        {
                            "op": r.op,
                            "connections": r.connections,
                            "timed_out": r.timed_out,
                            "warmup_errors": r.warmup_errors,
                            "check_problem": r.check_problem,
                            "note": r.note,
                            "other_cpu_pct": r.other_cpu_pct,
                            "steal_cpu_pct": r.steal_cpu_pct,
                            "expected_status": SERVER_PEERS[key].expected[r.op],
                            **(asdict(r.result) if r.result is not None else {}),
                        }
                        for r in run.rows
                    ],
                }
                for key, run in runs.items()
            },
        }
        Path(args.json_path).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"raw figures written to {args.json_path}")
    return rc


SERVER_PEERS: dict[str, type[Peer]] = {
    "langgraph": LangGraphPeer,
    "opencode": OpenCodePeer,
    "sessiond": SessiondPeer,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_uvloop = not args.no_uvloop
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            use_uvloop = False
    try:
        if use_uvloop:
            return uvloop.run(bench(args))
        return asyncio.run(bench(args))
    except RuntimeError as exc:
        load.loud(f"bench failed: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM
        return 143


if __name__ == "__main__":
    sys.exit(main())
