"""Agent turns bench for sessiond: host overhead per streamed chunk, chunk → SSE delivery,
turn start latency, and concurrent turns.

Starts ``sessiond serve`` (SQLite) on a fresh temporary data directory with an
``agents.toml`` naming the suite's scripted ACP agent (``tests/support/scripted_agent.py``,
run by this interpreter), on a free loopback port, then:

1. **Streaming**: one session, one warm-up turn (``say: warm``; the agent process stays),
   then ``chunks: 10000 8`` (10,000 chunks of 8 characters). Server CPU time (utime +
   stime of the server process, not its agent children) over the turn, minus the CPU of
   an idle period of the same length afterwards, ÷ 10,000 = µs per chunk. The session's
   SSE stream is open during the turn: every ``message.updated`` event's delay from its
   ``createdAt`` to its arrival here, the event count, and the text of the deltas (must
   add up to 80,000 characters).
2. **Turn start**: on a fresh session, the first prompt (cold: agent process start,
   ``initialize``, ``session/new``), then 50 sequential ``say: x`` prompts: time from
   sending ``POST /prompt`` to ``turn.started`` arriving on SSE, to the first
   ``message.updated``, and to the turn's end event.
3. **Concurrent turns**: 20 sessions, each warmed up by one ``say: warm`` turn (all at
   once), then ``chunks: 2000 8`` prompted in all 20 at once: each turn's duration, the
   largest gap between consecutive SSE events of each session during its turn (a stall
   flag above 1 s), the total wall time, and the text received.

Run on demand, never by the test suite::

    .venv/bin/python bench/agents.py
    .venv/bin/python bench/agents.py --json /tmp/agents-bench.json --keep-data

See ``bench/README.md`` § Agents for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPTED = REPO / "tests" / "support" / "scripted_agent.py"
# bench/ is not a package: ``python bench/agents.py`` has it on sys.path already.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import load  # noqa: E402  (client, server management, /proc helpers)

CHUNK_TARGET_US = 50.0
SSE_P99_TARGET_MS = 100.0
START_P99_TARGET_MS = 50.0
STALL_S = 1.0
END_TYPES = ("turn.completed", "turn.cancelled", "turn.failed")

# --------------------------------------------------------------------------------------
# Server with an agents.toml
# --------------------------------------------------------------------------------------


def agents_toml() -> str:
    cmd = json.dumps([sys.executable, str(SCRIPTED)])
    return (
        "[agents.scripted]\n"
        f"command = {cmd}\n"
        f"ro_paths = {json.dumps([str(SCRIPTED.parent)])}\n"
        'description = "the suite\'s scripted agent (bench/agents.py)"\n'
    )


class AgentServer(load.ManagedServer):
    """``load.ManagedServer`` whose data dir holds ``agents.toml`` before the start."""

    def start(self) -> None:
        self.data_dir.mkdir()
        (self.data_dir / "agents.toml").write_text(agents_toml())
        cmd = [
            self.executable,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_process(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``timeout``; the temp dir is left to the caller."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    self.proc.wait(5)
            return self.proc.returncode
        finally:
            if self._log is not None:
                self._log.close()


def has_no_access_log_flag(executable: str) -> bool:
    try:
        out = subprocess.run(
            [executable, "serve", "--help"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--no-access-log" in out


# --------------------------------------------------------------------------------------
# CPU
# --------------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of one process (all its threads), seconds."""
    return load.process_tree_cpu_seconds([pid])


def children_cpu_s(pid: int) -> float:
    """utime + stime of ``pid``'s live descendants (the agents), seconds."""
    kids = [p for p in load.process_tree(pid) if p != pid]
    return (load.process_tree_cpu_seconds(kids) or 0.0) if kids else 0.0


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine (/proc/stat, all cores)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / load._CLK_TCK


@dataclass
class CpuWindow:
    """CPU of the server, its agents, this driver and the rest of the machine."""

    t0: float
    server0: float
    agents0: float
    driver0: float
    machine0: float
    pid: int

    @classmethod
    def begin(cls, pid: int) -> CpuWindow:
        return cls(
            time.perf_counter(),
            proc_cpu_s(pid) or 0.0,
            children_cpu_s(pid),
            time.process_time(),
            machine_busy_s(),
            pid,
        )

    def end(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        server = (proc_cpu_s(self.pid) or 0.0) - self.server0
        # Agents that exited during the window are not counted (none do here).
        agents = max(0.0, children_cpu_s(self.pid) - self.agents0)
        driver = time.process_time() - self.driver0
        machine = machine_busy_s() - self.machine0
        other = max(0.0, machine - server - agents - driver)
        return {
            "wall_s": wall,
            "server_cpu_s": server,
            "agents_cpu_s": agents,
            "driver_cpu_s": driver,
            "other_cpu_pct": 100.0 * other / wall if wall > 0 else 0.0,
        }


# --------------------------------------------------------------------------------------
# HTTP and SSE clients
# --------------------------------------------------------------------------------------


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class Ev:
    type: str
    id: int
    data: dict[str, Any]
    wall: float  # time.time() at arrival
    perf: float  # time.perf_counter() at arrival


class SseStream:
    """One session's ``events/stream`` on a raw asyncio connection; keeps every event."""

    def __init__(
        self, host: str, port: int, key: str, session_id: str, path: str | None = None
    ) -> None:
        self.host, self.port, self.key, self.session_id = host, port, key, session_id
        self.path = path or f"/v1/sessions/{session_id}/events/stream"
        self.events: list[Ev] = []
        self.error: BaseException | None = None
        self._waiters: list[tuple[Callable[[Ev], bool], asyncio.Future[Ev]]] = []
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 24)
        self._writer = writer
        path = self.path
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Authorization: Bearer {self.key}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if head[9:12] != b"200":
            raise RuntimeError(f"SSE {path}: {head[:200]!r}")
        chunked = b"transfer-encoding: chunked" in head.lower()
        # The server fixed the stream's start (the newest event id) before answering.
        self._task = asyncio.create_task(self._pump(reader, chunked))

    async def _pump(self, reader: asyncio.StreamReader, chunked: bool) -> None:
        buf = b""
        try:
            while True:
                if chunked:
                    line = await reader.readuntil(b"\r\n")
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        return
                    data = (await reader.readexactly(size + 2))[:-2]
                else:
                    data = await reader.read(1 << 16)
                    if not data:
                        return
                wall, perf = time.time(), time.perf_counter()
                buf = (buf + data).replace(b"\r\n", b"\n")
                while True:
                    end = buf.find(b"\n\n")
                    if end < 0:
                        break
                    block, buf = buf[:end], buf[end + 2 :]
                    self._block(block, wall, perf)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as e:  # kept and reported
            self.error = e
        finally:
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"SSE stream ended: {self.error!r}"))

    def _block(self, block: bytes, wall: float, perf: float) -> None:
        etype, eid, data = "message", -1, []
        for raw in block.split(b"\n"):
            line = raw.decode("utf-8", "replace")
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                etype = value
            elif name == "id":
                eid = int(value)
            elif name == "data":
                data.append(value)
        if not data:
            return  # a ping
        ev = Ev(etype, eid, json.loads("\n".join(data)), wall, perf)
        self.events.append(ev)
        if self._waiters:
            keep = []
            for pred, fut in self._waiters:
                if fut.done():
                    continue
                if pred(ev):
                    fut.set_result(ev)
                else:
                    keep.append((pred, fut))
            self._waiters = keep

    async def wait(self, pred: Callable[[Ev], bool], since: int = 0, timeout: float = 60) -> Ev:
        for ev in self.events[since:]:
            if pred(ev):
                return ev
        fut: asyncio.Future[Ev] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, timeout)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()


def is_turn(ev: Ev, types: Sequence[str], turn_id: str | None = None) -> bool:
    if ev.type not in types:
        return False
    return turn_id is None or ev.data.get("data", {}).get("turn", {}).get("id") == turn_id


def index_of(events: list[Ev], ev: Ev) -> int:
    return next(i for i in range(len(events) - 1, -1, -1) if events[i] is ev)


async def fresh(conn: load.HttpConnection) -> None:
    """A new connection before a measured request (the old one may have been idle > 5 s)."""
    conn.close()
    await conn.connect()


class Api:
    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port, self.key = host, port, key
        self.builder = load.RequestBuilder(host, port, key)

    async def call(
        self, conn: load.HttpConnection, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        if method == "GET":
            raw = self.builder.get(path)
        else:
            raw = self.builder.with_body(method, path, json.dumps(body or {}).encode())
        try:
            status, payload = await conn.request(raw)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            # uvicorn closes keep-alive connections idle for 5 s; a GET is safe to resend.
            if method != "GET" or (isinstance(e, asyncio.IncompleteReadError) and e.partial):
                raise
            conn.close()
            status, payload = await conn.request(raw)
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload

    async def create_session(self, conn: load.HttpConnection) -> str:
        status, doc = await self.call(conn, "POST", "/v1/sessions", {"agent": "scripted"})
        if status != 201:
            raise RuntimeError(f"POST /v1/sessions: HTTP {status}: {str(doc)[:300]}")
        return str(doc["session"]["id"])

    async def prompt(self, conn: load.HttpConnection, sid: str, content: str) -> dict[str, Any]:
        status, doc = await self.call(
            conn, "POST", f"/v1/sessions/{sid}/prompt", {"content": content}
        )
        if status != 202:
            raise RuntimeError(f"POST prompt: HTTP {status}: {str(doc)[:300]}")
        return dict(doc["turn"])

    async def turn(self, conn: load.HttpConnection, sid: str, tid: str) -> dict[str, Any]:
        status, doc = await self.call(conn, "GET", f"/v1/sessions/{sid}/turns/{tid}?wait=30")
        if status != 200:
            raise RuntimeError(f"GET turn: HTTP {status}: {str(doc)[:300]}")
        return dict(doc["turn"])


@dataclass
class TurnRun:
    """One prompt as the client saw it: send time, the turn, its events on SSE."""

    turn: dict[str, Any]
    sent_perf: float
    started: Ev
    ended: Ev
    updates: list[Ev]  # message.updated of the turn's assistant message

    @property
    def text(self) -> str:
        return "".join(
            str((e.data["data"].get("delta") or {}).get("text") or "") for e in self.updates
        )

    def sse_latencies_ms(self) -> list[float]:
        return [e.wall * 1000 - iso_ms(e.data["createdAt"]) for e in self.updates]


async def run_turn(
    api: Api, conn: load.HttpConnection, sse: SseStream, sid: str, content: str, timeout: float
) -> TurnRun:
    since = len(sse.events)
    sent = time.perf_counter()
    turn = await api.prompt(conn, sid, content)
    tid = turn["id"]
    started = await sse.wait(lambda e: is_turn(e, ("turn.started",), tid), since, timeout)
    ended = await sse.wait(lambda e: is_turn(e, END_TYPES, tid), since, timeout)
    final = ended.data["data"]["turn"]
    mid = final.get("assistantMessageId")
    lo, hi = index_of(sse.events, started), index_of(sse.events, ended)
    updates = [
        e
        for e in sse.events[lo:hi]
        if e.type == "message.updated" and e.data["data"]["message"]["id"] == mid
    ]
    return TurnRun(final, sent, started, ended, updates)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    return load.percentile(sorted(values), q) if values else None


def f_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} ms"


@dataclass
class Row:
    part: str
    figure: str
    value: str
    target: str = "—"
    verdict: str = "—"


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("ok" if ok else "MISS")


def print_rows(rows: list[Row], title: str) -> None:
    cols = ("part", "figure", "value", "target", "verdict")
    cells = [[r.part, r.figure, r.value, r.target, r.verdict] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print(title)
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for x in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)) + " |")


def ended_ok(run: TurnRun) -> bool:
    return run.ended.type == "turn.completed" and run.turn.get("status") == "completed"


def turn_problem(run: TurnRun, label: str) -> str | None:
    if ended_ok(run):
        return None
    return f"{label}: turn {run.turn['id']} ended {run.ended.type} ({run.turn.get('error')!r})"


# --------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------


async def part_streaming(
    api: Api, pid: int, args: argparse.Namespace, problems: list[str]
) -> dict[str, Any]:
    conn = load.HttpConnection(api.host, api.port)
    sid = await api.create_session(conn)
    sse = SseStream(api.host, api.port, api.key, sid)
    await sse.open()
    try:
        warm = await run_turn(api, conn, sse, sid, "say: warm", args.timeout)
        if p := turn_problem(warm, "1 warm-up"):
            problems.append(p)
        await asyncio.sleep(0.3)  # let the warm-up's tail (bus, checkpoint) settle
        n, size = args.chunks, 8
        await fresh(conn)
        cpu = CpuWindow.begin(pid)
        run = await run_turn(api, conn, sse, sid, f"chunks: {n} {size}", args.timeout)
        busy = cpu.end()
        # The same length of idle time, SSE still open, agent process alive.
        idle_win = CpuWindow.begin(pid)
        await asyncio.sleep(busy["wall_s"])
        idle = idle_win.end()
        full = await api.turn(conn, sid, run.turn["id"])
    finally:
        sse.close()
        conn.close()
    if p := turn_problem(run, "1 streaming"):
        problems.append(p)
    text = run.text
    expected = n * size
    if len(text) != expected:
        problems.append(
            f"1 streaming: the deltas carried {len(text):,} characters, expected {expected:,}"
        )
    lat = run.sse_latencies_ms()
    net_cpu = busy["server_cpu_s"] - idle["server_cpu_s"]
    sizes = [len(json.dumps(e.data)) for e in run.updates]
    return {
        "session": sid,
        "chunks": n,
        "chunk_size": size,
        "turn": full,
        "warmup_cold_start": cold_figures(warm),
        "busy": busy,
        "idle": idle,
        "server_cpu_net_s": net_cpu,
        "us_per_chunk": 1e6 * net_cpu / n,
        "agent_us_per_chunk": 1e6 * busy["agents_cpu_s"] / n,
        "turn_wall_s": run.ended.perf - run.sent_perf,
        "stream_s": (run.updates[-1].perf - run.updates[0].perf) if run.updates else None,
        "updates": len(run.updates),
        "text_chars": len(text),
        "text_expected": expected,
        "text_ok": len(text) == expected,
        "sse_latency_ms": {
            "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99),
            "max": max(lat) if lat else None,
        },
        "event_bytes": {
            "mean": statistics.fmean(sizes) if sizes else None,
            "max": max(sizes, default=0),
        },
        "latencies_ms": lat,
    }


def cold_figures(run: TurnRun) -> dict[str, Any]:
    first = run.updates[0].perf - run.sent_perf if run.updates else None
    return {
        "to_started_ms": 1e3 * (run.started.perf - run.sent_perf),
        "to_first_update_ms": None if first is None else 1e3 * first,
        "to_end_ms": 1e3 * (run.ended.perf - run.sent_perf),
        "status": run.turn.get("status"),
    }


async def part_start(
    api: Api, pid: int, args: argparse.Namespace, problems: list[str]
) -> dict[str, Any]:
    conn = load.HttpConnection(api.host, api.port)
    sid = await api.create_session(conn)
    sse = SseStream(api.host, api.port, api.key, sid)
    await sse.open()
    runs: list[TurnRun] = []
    try:
        cold = await run_turn(api, conn, sse, sid, "say: x", args.timeout)
        if p := turn_problem(cold, "2 cold"):
            problems.append(p)
        await asyncio.sleep(0.2)
        await fresh(conn)
        cpu = CpuWindow.begin(pid)
        for _ in range(args.prompts):
            runs.append(await run_turn(api, conn, sse, sid, "say: x", args.timeout))
        window = cpu.end()
    finally:
        sse.close()
        conn.close()
    for i, r in enumerate(runs):
        if p := turn_problem(r, f"2 prompt {i + 1}"):
            problems.append(p)
        if r.text != "x":
            problems.append(f"2 prompt {i + 1}: text {r.text!r}, expected 'x'")
    started = [1e3 * (r.started.perf - r.sent_perf) for r in runs]
    first = [1e3 * (r.updates[0].perf - r.sent_perf) for r in runs if r.updates]
    end = [1e3 * (r.ended.perf - r.sent_perf) for r in runs]
    # Server side: turn.createdAt (prompt committed) → startedAt (claimed), ms resolution.
    queued_to_started = [
        iso_ms(r.turn["startedAt"]) - iso_ms(r.turn["createdAt"])
        for r in runs
        if r.turn.get("startedAt")
    ]

    def stats(v: list[float]) -> dict[str, float | None]:
        return {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": max(v) if v else None}

    return {
        "session": sid,
        "prompts": len(runs),
        "cold": cold_figures(cold),
        "to_started_ms": stats(started),
        "to_first_update_ms": stats(first),
        "to_end_ms": stats(end),
        "server_created_to_started_ms": stats([float(x) for x in queued_to_started]),
        "window": window,
        "server_cpu_ms_per_turn": 1e3 * window["server_cpu_s"] / max(1, len(runs)),
        "raw": {"to_started_ms": started, "to_first_update_ms": first, "to_end_ms": end},
    }


async def part_concurrent(
    api: Api, pid: int, args: argparse.Namespace, problems: list[str]
) -> dict[str, Any]:
    n = args.sessions
    conns = [load.HttpConnection(api.host, api.port) for _ in range(n)]
    streams: list[SseStream] = []
    try:
        sids = [await api.create_session(conns[0]) for _ in range(n)]
        streams = [SseStream(api.host, api.port, api.key, s) for s in sids]
        await asyncio.gather(*(s.open() for s in streams))
        t = time.perf_counter()
        warm = await asyncio.gather(
            *(
                run_turn(api, conns[i], streams[i], sids[i], "say: warm", args.timeout)
                for i in range(n)
            )
        )
        warm_wall = time.perf_counter() - t
        for i, w in enumerate(warm):
            if p := turn_problem(w, f"3 warm-up {i}"):
                problems.append(p)
        await asyncio.sleep(0.5)
        await asyncio.gather(*(fresh(c) for c in conns))
        chunks = args.concurrent_chunks
        cpu = CpuWindow.begin(pid)
        t0, t0_wall = time.perf_counter(), time.time()
        runs = await asyncio.gather(
            *(
                run_turn(api, conns[i], streams[i], sids[i], f"chunks: {chunks} 8", args.timeout)
                for i in range(n)
            )
        )
        wall = time.perf_counter() - t0
        window = cpu.end()
        finals = await asyncio.gather(
            *(api.turn(conns[i], sids[i], runs[i].turn["id"]) for i in range(n))
        )
    finally:
        for s in streams:
            s.close()
        for c in conns:
            c.close()
    per: list[dict[str, Any]] = []
    lat: list[float] = []
    for i, (r, final) in enumerate(zip(runs, finals, strict=True)):
        if p := turn_problem(r, f"3 session {i}"):
            problems.append(p)
        text = r.text
        if len(text) != chunks * 8:
            problems.append(
                f"3 session {i}: the deltas carried {len(text):,} characters, "
                f"expected {chunks * 8:,}"
            )
        s = streams[i]
        lo, hi = index_of(s.events, r.started), index_of(s.events, r.ended)
        window_events = s.events[lo : hi + 1]
        gaps = [(b.perf - a.perf, a.type, b.type) for a, b in itertools.pairwise(window_events)]
        gap = max(gaps, default=(0.0, "", ""))
        lat.extend(r.sse_latencies_ms())
        duration = None
        if final.get("startedAt") and final.get("endedAt"):
            duration = (iso_ms(final["endedAt"]) - iso_ms(final["startedAt"])) / 1000
        per.append(
            {
                "session": sids[i],
                "status": final.get("status"),
                "duration_s": duration,
                "client_s": r.ended.perf - r.sent_perf,
                "started_after_s": r.started.perf - t0,
                "updates": len(r.updates),
                "text_chars": len(text),
                "max_gap_s": gap[0],
                "max_gap_between": f"{gap[1]} → {gap[2]}",
                # [type, createdAt, arrival] in ms after the prompts were sent
                "timeline": [
                    [e.type, iso_ms(e.data["createdAt"]) - 1e3 * t0_wall, 1e3 * (e.perf - t0)]
                    for e in window_events
                ],
            }
        )
    durations = [p["duration_s"] for p in per if p["duration_s"] is not None]
    worst = max(per, key=lambda p: p["max_gap_s"])
    return {
        "sessions": n,
        "chunks": chunks,
        "warmup_wall_s": warm_wall,
        "warmup_cold": [cold_figures(w) for w in warm],
        "wall_s": wall,
        "window": window,
        "duration_s": {
            "min": min(durations, default=None),
            "median": statistics.median(durations) if durations else None,
            "max": max(durations, default=None),
        },
        "max_gap_s": worst["max_gap_s"],
        "max_gap_session": worst["session"],
        "max_gap_between": worst["max_gap_between"],
        "stalled": [p["session"] for p in per if p["max_gap_s"] > STALL_S],
        "sse_latency_ms": {
            "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99),
            "max": max(lat, default=None),
        },
        "per_session": per,
    }


async def part_acp(
    api: Api, pid: int, args: argparse.Namespace, problems: list[str]
) -> dict[str, Any]:
    """``/api/acp``: a turn of ``--chunks`` chunks prompted with ``session/prompt``, read on
    ``GET /api/acp?sessionId=``; each message with an ``id`` is timed from its event's
    ``createdAt`` (read afterwards from ``/v1``) to its arrival."""
    conn = load.HttpConnection(api.host, api.port)
    try:
        _, doc = await api.call(
            conn,
            "POST",
            "/api/acp",
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "session/new",
                "params": {"provider": "scripted"},
            },
        )
        sid = str(doc["result"]["sessionId"])
        sse = SseStream(api.host, api.port, api.key, sid, path=f"/api/acp?sessionId={sid}")
        await sse.open()

        async def prompt(text: str) -> dict[str, Any]:
            body = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "session/prompt",
                "params": {"sessionId": sid, "prompt": [{"type": "text", "text": text}]},
            }
            await fresh(conn)
            status, doc = await api.call(conn, "POST", "/api/acp", body)
            if status != 200 or "result" not in doc:
                raise RuntimeError(f"session/prompt: HTTP {status}: {str(doc)[:300]}")
            return dict(doc["result"])

        await prompt("say: warm")
        n, size = args.chunks, 8
        since = len(sse.events)
        cpu = CpuWindow.begin(pid)
        t0 = time.perf_counter()
        result = await prompt(f"chunks: {n} {size}")
        wall = time.perf_counter() - t0
        window = cpu.end()

        def text_of(evs: list[Ev]) -> int:
            total = 0
            for e in evs:
                update = (e.data.get("params") or {}).get("update") or {}
                if update.get("sessionUpdate") == "agent_message_chunk":
                    total += len(update.get("content", {}).get("text", ""))
            return total

        deadline = time.monotonic() + args.timeout
        while text_of(sse.events[since:]) < n * size and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        got = sse.events[since:]
        sse.close()
        created: dict[int, int] = {}
        after = min((e.id for e in got if e.id >= 0), default=0) - 1
        while True:
            _, page = await api.call(
                conn, "GET", f"/v1/sessions/{sid}/events?after={after}&limit=200"
            )
            for ev in page["events"]:
                created[ev["id"]] = iso_ms(ev["createdAt"])
            if not page.get("nextCursor"):
                break
            after = int(page["nextCursor"])
    finally:
        conn.close()
    lat = [e.wall * 1000 - created[e.id] for e in got if e.id in created]
    chars = text_of(got)
    if chars != n * size:
        problems.append(f"acp: the chunks carried {chars:,} characters, expected {n * size:,}")
    if result.get("stopReason") != "end_turn":
        problems.append(f"acp: session/prompt answered {result}")
    return {
        "session": sid,
        "chunks": n,
        "messages": len(got),
        "text_chars": chars,
        "prompt_wall_s": wall,
        "sse_latency_ms": {
            "p50": pct(lat, 0.5),
            "p99": pct(lat, 0.99),
            "max": max(lat, default=None),
        },
        "window": window,
    }


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    s = results.get("streaming")
    if s:
        us = s["us_per_chunk"]
        rows.append(
            Row(
                "1 stream",
                f"server CPU per chunk ({s['chunks']:,} chunks, idle baseline subtracted)",
                f"{us:.1f} µs",
                f"< {CHUNK_TARGET_US:g} µs",
                verdict(us < CHUNK_TARGET_US),
            )
        )
        b, i = s["busy"], s["idle"]
        rows.append(
            Row(
                "1 stream",
                "turn wall / server CPU / idle CPU / agent CPU",
                f"{b['wall_s']:.2f} s / {b['server_cpu_s']:.2f} s / {i['server_cpu_s']:.2f} s"
                f" / {b['agents_cpu_s']:.2f} s",
            )
        )
        lat = s["sse_latency_ms"]
        rows.append(
            Row(
                "1 stream",
                "message.updated createdAt → SSE arrival p50 / p99 / max",
                f"{f_ms(lat['p50'])} / {f_ms(lat['p99'])} / {f_ms(lat['max'])}",
                f"p99 < {SSE_P99_TARGET_MS:g} ms",
                verdict(lat["p99"] is not None and lat["p99"] < SSE_P99_TARGET_MS),
            )
        )
        rows.append(
            Row(
                "1 stream",
                "message.updated events / delta text received",
                f"{s['updates']:,} / {s['text_chars']:,} chars",
                f"= {s['text_expected']:,} chars",
                "ok" if s["text_ok"] else "FAIL",
            )
        )
        st0 = results.get("start")
        if st0:
            fixed = st0["server_cpu_ms_per_turn"] / 1e3
            per = 1e6 * (s["server_cpu_net_s"] - fixed) / s["chunks"]
            rows.append(
                Row(
                    "1 stream",
                    "  the same, less part 2's server CPU per say: x turn (fixed cost)",
                    f"{per:.1f} µs",
                )
            )
        eb = s["event_bytes"]
        if eb["mean"] is not None:
            rows.append(
                Row(
                    "1 stream",
                    "message.updated event size mean / max",
                    f"{eb['mean'] / 1024:,.1f} / {eb['max'] / 1024:,.1f} KiB",
                )
            )
    st = results.get("start")
    if st:
        a, f, e = st["to_started_ms"], st["to_first_update_ms"], st["to_end_ms"]
        rows.append(
            Row(
                "2 start",
                f"POST /prompt → turn.started on SSE, p50 / p99 ({st['prompts']} warm)",
                f"{f_ms(a['p50'])} / {f_ms(a['p99'])}",
                f"p99 < {START_P99_TARGET_MS:g} ms (proxy)",
                verdict(a["p99"] is not None and a["p99"] < START_P99_TARGET_MS),
            )
        )
        sv = st["server_created_to_started_ms"]
        rows.append(
            Row(
                "2 start",
                "  server side: turn createdAt → startedAt, p50 / p99 (ms resolution)",
                f"{f_ms(sv['p50'])} / {f_ms(sv['p99'])}",
            )
        )
        rows.append(
            Row(
                "2 start",
                "POST /prompt → first message.updated, p50 / p99",
                f"{f_ms(f['p50'])} / {f_ms(f['p99'])}",
            )
        )
        rows.append(
            Row(
                "2 start",
                "POST /prompt → turn.completed, p50 / p99",
                f"{f_ms(e['p50'])} / {f_ms(e['p99'])}",
            )
        )
        rows.append(
            Row("2 start", "server CPU per say: x turn", f"{st['server_cpu_ms_per_turn']:.1f} ms")
        )
        c = st["cold"]
        rows.append(
            Row(
                "2 start",
                "cold (1st prompt of a fresh session): → started / first update / end",
                f"{f_ms(c['to_started_ms'])} / {f_ms(c['to_first_update_ms'])} / "
                f"{f_ms(c['to_end_ms'])}",
            )
        )
    if s:
        c = s["warmup_cold_start"]
        rows.append(
            Row(
                "2 start",
                "cold (part 1's warm-up, 1st agent of the server): → first update / end",
                f"{f_ms(c['to_first_update_ms'])} / {f_ms(c['to_end_ms'])}",
            )
        )
    cc = results.get("concurrent")
    if cc:
        d = cc["duration_s"]

        def fs(v: float | None) -> str:
            return "—" if v is None else f"{v:.2f}"

        rows.append(
            Row(
                "3 concurrent",
                f"turn duration ({cc['sessions']} x {cc['chunks']:,} chunks) min / median / max",
                f"{fs(d['min'])} / {fs(d['median'])} / {fs(d['max'])} s",
            )
        )
        rows.append(Row("3 concurrent", "total wall time", f"{cc['wall_s']:.2f} s"))
        rows.append(
            Row(
                "3 concurrent",
                "largest gap between consecutive SSE events of a session",
                f"{1e3 * cc['max_gap_s']:.0f} ms ({cc['max_gap_between']})",
                f"≤ {STALL_S:g} s (no stall)",
                verdict(not cc["stalled"]),
            )
        )
        lat = cc["sse_latency_ms"]
        rows.append(
            Row(
                "3 concurrent",
                "message.updated createdAt → SSE arrival p50 / p99",
                f"{f_ms(lat['p50'])} / {f_ms(lat['p99'])}",
            )
        )
        w = cc["window"]
        rows.append(
            Row(
                "3 concurrent",
                "server CPU / agents CPU during the turns",
                f"{w['server_cpu_s']:.2f} s / {w['agents_cpu_s']:.2f} s",
            )
        )
        rows.append(
            Row(
                "3 concurrent",
                f"{cc['sessions']} cold starts at once (the warm-up), wall",
                f"{cc['warmup_wall_s']:.2f} s",
            )
        )
    if ac := results.get("acp"):
        lat = ac["sse_latency_ms"]
        rows.append(
            Row(
                "4 /api/acp",
                "streamed chunk (event createdAt) → ACP SSE arrival p50 / p99",
                f"{f_ms(lat['p50'])} / {f_ms(lat['p99'])}",
                "p99 < 100 ms",
                verdict(lat["p99"] is not None and lat["p99"] < 100),
            )
        )
        rows.append(
            Row(
                "4 /api/acp",
                f"session/prompt of {ac['chunks']:,} chunks: wall / ACP messages / text",
                f"{ac['prompt_wall_s']:.2f} s / {ac['messages']} / {ac['text_chars']:,} chars",
            )
        )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--only", default="streaming,start,concurrent,acp", help="parts to run")
    p.add_argument("--chunks", type=int, default=10_000, help="chunks of the part 1 turn")
    p.add_argument("--prompts", type=int, default=50, help="warm prompts of part 2")
    p.add_argument("--sessions", type=int, default=20, help="sessions of part 3")
    p.add_argument("--concurrent-chunks", type=int, default=2000, help="chunks per part 3 turn")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a turn")
    p.add_argument("--json", dest="json_path", default=None, help="also write raw figures here")
    p.add_argument("--sessiond", default=None, help="sessiond executable (default: the venv's)")
    p.add_argument("--server-arg", action="append", default=[], help="extra `serve` argument")
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument("--keep-data", action="store_true", help="keep the temp data dir and log")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.parts) - {"streaming", "start", "concurrent", "acp"}
    if unknown:
        p.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    return args


def log_findings(path: Path) -> list[str]:
    """Lines of the server log that look like trouble (warnings, errors, tracebacks)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    marks = ("WARNING", "ERROR", "Traceback", "CRITICAL", '"level": "warning"', '"level": "error"')
    out, stopping = [], False
    for ln in lines:
        stopping = stopping or "Shutting down" in ln
        if any(m in ln for m in marks):
            out.append(("(during shutdown) " if stopping else "") + ln)
    return out


async def bench(args: argparse.Namespace) -> int:
    me = asyncio.current_task()
    if me is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    executable = load.find_sessiond(args.sessiond)
    extra = list(args.server_arg)
    if "--no-access-log" not in extra and has_no_access_log_flag(executable):
        extra.append("--no-access-log")
    server = AgentServer(executable, extra, keep_data=True)
    meta: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "loop": type(asyncio.get_running_loop()).__module__,
        "cpus": os.cpu_count(),
        "cmd": [executable, "serve", *extra],
        "agent": [sys.executable, str(SCRIPTED)],
    }
    results: dict[str, Any] = {}
    problems: list[str] = []
    findings: list[str] = []
    rc = 0
    t_start = time.perf_counter()
    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        print(f"started sessiond pid {pid} on {server.url}, data {server.data_dir}", flush=True)
        key = await server.wait_ready(args.startup_timeout)
        api = Api("127.0.0.1", server.port, key)
        parts = {
            "streaming": part_streaming,
            "start": part_start,
            "concurrent": part_concurrent,
            "acp": part_acp,
        }
        for name in ("streaming", "start", "concurrent", "acp"):
            if name not in args.parts:
                continue
            t = time.perf_counter()
            try:
                results[name] = await parts[name](api, pid, args, problems)
            except (RuntimeError, TimeoutError, OSError, EOFError, load.HttpError) as e:
                problems.append(f"part {name} failed: {type(e).__name__}: {e}")
            print(f"  part {name}: {time.perf_counter() - t:.1f} s", flush=True)
            if server.proc.poll() is not None:
                raise RuntimeError("sessiond died during the run\n" + server.log_tail())
        mem = load.read_memory_kb(pid)
        meta["server_rss_mb"] = mem.get("VmRSS", 0) / 1024
        meta["server_peak_rss_mb"] = mem.get("VmHWM", 0) / 1024
    finally:
        meta["server_exit_code"] = None
        if server.proc is not None:
            with contextlib.suppress(BaseException):
                await asyncio.sleep(1.0)  # the server sees the SSE disconnects first
            meta["server_exit_code"] = server.stop_process()
        findings = log_findings(server.log_path)
        if not args.keep_data:
            shutil.rmtree(server.tmp, ignore_errors=True)
        else:
            print(f"data dir and server log kept in {server.tmp}")
    meta["seconds"] = time.perf_counter() - t_start

    rows = table(results)
    print()
    other = [
        f"{name} {r['window' if 'window' in r else 'busy']['other_cpu_pct']:.0f}%"
        for name, r in results.items()
    ]
    print_rows(
        rows,
        f"sessiond agents bench — SQLite, scripted ACP agent, {meta['seconds']:.0f} s, "
        f"other cpu: {', '.join(other)}",
    )
    if "server_rss_mb" in meta:
        print(
            f"server RSS at the end: {meta['server_rss_mb']:.1f} MB "
            f"(peak {meta['server_peak_rss_mb']:.1f} MB)"
        )
    print(
        'note: turn.started is the observable proxy for "the agent\'s session/prompt sent":'
        " the runner sends session/prompt after it (assistant message + prompt read)."
    )
    if findings:
        print(f"server log: {len(findings)} warning/error line(s); first ones:")
        for ln in findings[:10]:
            print("   ", ln[:300])
    if problems:
        load.loud("PROBLEMS:\n" + "\n".join(problems))
        rc = 1
    misses = [r for r in rows if r.verdict in ("MISS", "FAIL")]
    if misses:
        print("targets missed: " + "; ".join(f"{r.part}: {r.figure}" for r in misses))
        if args.fail_on_miss and rc == 0:
            rc = 3
    if args.json_path:
        doc = {"meta": meta, "results": results, "problems": problems, "log": findings[:200]}
        Path(args.json_path).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"raw figures written to {args.json_path}")
    return rc


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
    except asyncio.CancelledError:
        return 143


if __name__ == "__main__":
    sys.exit(main())
