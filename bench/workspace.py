"""Workspace benchmark for sessiond: checkpoint, restore, fork, diff, storage, snapshot.

Reuses ``bench/load.py``'s lean keep-alive HTTP client, measurement loop and server
management, and ``bench/messages.py``'s restartable server and message seeding (imported,
not copied). Everything at 1 connection, SQLite. What it prints, each next to its target:

1. **checkpoint / restore / fork** p50 / p99 / ops/s in sessions whose workspace holds
   10, 1,000 and 10,000 files (``--sizes``); target p99 < 20 ms, flat across sizes.
   ``POST .../checkpoints {}`` repeatedly; ``POST .../restore`` alternating between two
   checkpoints that differ by one edited file; ``POST .../fork {}`` repeatedly from the
   same parent. Fresh sessions (one edited file); "1b" repeats the three in the storage
   session of part 4 (1,000 changed paths against its base), same target.
2. **the same three** in a 10-file session holding 10 and 100,000 messages
   (``--messages``), seeded through the service layer (default) or over HTTP.
3. **diff** ``GET .../diff?from=<checkpoint>`` with 10 changed files in the largest
   workspace; target p99 < 50 ms. Diffs are cached per tree pair, so both the first call
   on a fresh pair (one file edited again before each call) and repeated calls are shown.
4. **storage** after ``--checkpoints`` (1,000) rounds of "edit one file, take a
   checkpoint" in the largest workspace: SQLite size before / after against the raw size
   of the files; target < 2x the workspace plus the edits.
5. **for information**: the time to create the largest session (one ``POST /v1/sessions``
   with ``source.files``) and to download its snapshot (gzip tar).

Run on demand, never by the test suite::

    .venv/bin/python bench/workspace.py                         # everything, ~3 min
    .venv/bin/python bench/workspace.py --sizes 10,1000 --seconds 1 --checkpoints 100 \\
        --messages 10,10000                                     # scaled down, ~1 min
    .venv/bin/python bench/workspace.py --only ops,diff --py-spy /tmp/prof

See the "Workspace" section of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# bench/ is not a package: ``python bench/workspace.py`` has it on sys.path already.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import load  # noqa: E402  (client, measurement loop, server management)
import messages as msgbench  # noqa: E402  (restartable server, message seeding)

HttpConnection = load.HttpConnection
RequestBuilder = load.RequestBuilder

# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------

OPS: tuple[str, ...] = ("checkpoint", "restore", "fork")
OP_MAX_P99_MS = 20.0  # checkpoint / restore / fork, every size
DIFF_MAX_P99_MS = 50.0  # diff of 10 changed files in a 10,000-file workspace
STORAGE_MAX_RATIO = 2.0  # SQLite size < 2 x (workspace + edits), raw bytes
FLAT_RATIO = msgbench.FLAT_RATIO  # "flat": largest size's p99 within 1.5x of the smallest
FLAT_SLACK_MS = msgbench.FLAT_SLACK_MS  # ... or within +1 ms of it
EXPECTED = {"checkpoint": 201, "restore": 200, "fork": 201, "diff": 200}
PARTS: tuple[str, ...] = ("ops", "messages", "diff", "storage")
MAX_SOURCE_FILES = 10_000  # POST /v1/sessions source.files limit
SERVER_BODY_BYTES = 10 * 1024 * 1024  # the server's default JSON body limit
DB_FILE = "sessiond.db"

# --------------------------------------------------------------------------------------
# Workspace content: ~1 KB of Python-like text per file, 100 files per directory
# --------------------------------------------------------------------------------------

FILES_PER_DIR = 100
FILE_BYTES = 900  # lines are added until the text reaches this; ~950 bytes on average
_WORDS = msgbench._WORDS
_VERBS = ("load", "parse", "check", "build", "merge", "split", "render", "index", "scan")
_NOUNS = ("token", "record", "header", "buffer", "entry", "config", "result", "cursor")


def file_path(i: int) -> str:
    """``src/mod17/file_1742.py``: 100 files per directory, directories under ``src``."""
    return f"src/mod{i // FILES_PER_DIR:02d}/file_{i:04d}.py"


def _lines(i: int, salt: str) -> list[str]:
    rng = random.Random(f"{salt}:{i}")
    lines = [
        f"# {file_path(i)} ({salt}): " + " ".join(rng.choice(_WORDS) for _ in range(8)),
        "from __future__ import annotations",
        "",
        f"import {rng.choice(('os', 're', 'json', 'math', 'itertools'))}",
        "",
    ]
    size = sum(len(x) + 1 for x in lines)
    n = 0
    while size < FILE_BYTES:
        n += 1
        block = [
            "",
            f"def {rng.choice(_VERBS)}_{rng.choice(_NOUNS)}_{n}(value: int, "
            f"limit: int = {rng.randint(1, 999)}) -> int:",
            "    # " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 9))),
            f"    result = value * {rng.randint(2, 97)} + {rng.randint(0, 9999)}",
            "    if result > limit:",
            "        return result - limit",
            "    return result",
        ]
        lines += block
        size += sum(len(x) + 1 for x in block)
    return lines


def file_text(i: int, salt: str, version: int = 0) -> str:
    """File ``i`` of workspace ``salt``; ``version`` > 0 changes one line (a 1-line diff)."""
    lines = _lines(i, salt)
    if version:
        k = len(lines) // 2
        lines[k] = f"    # edited: version {version}"
    return "\n".join(lines) + "\n"


def workspace_files(n: int, salt: str) -> dict[str, str]:
    return {file_path(i): file_text(i, salt) for i in range(n)}


def raw_bytes(files: dict[str, str]) -> int:
    return sum(len(text.encode()) for text in files.values())


# --------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection for setup calls (reopened when it sat idle: uvicorn
    closes idle connections after 5 s)."""

    def __init__(self, host: str, port: int, builder: RequestBuilder) -> None:
        self.host = host
        self.port = port
        self.builder = builder
        self.conn: HttpConnection | None = None
        self.last = 0.0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.conn is None or time.monotonic() - self.last > 2.0:
            self.close()
            self.conn = HttpConnection(self.host, self.port)
            await self.conn.connect()
        try:
            status, body = await self.conn.request(raw)
        except load.CONNECTION_ERRORS:
            self.close()
            raise
        self.last = time.monotonic()
        return status, body

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        expected: int = 200,
        raw: bytes | None = None,
    ) -> Any:
        """One request; its JSON answer (RuntimeError on another status)."""
        if raw is None:
            if method == "GET":
                raw = self.builder.get(path)
            else:
                raw = self.builder.with_body(method, path, dumps(body if body is not None else {}))
        status, resp = await self.send(raw)
        if status != expected:
            raise RuntimeError(
                f"{method} {path}: HTTP {status} (expected {expected}): {resp[:300]!r}"
            )
        return json.loads(resp) if resp else None

    def put_raw(self, session_id: str, path: str, text: str) -> bytes:
        # PUT .../files/{path} takes the raw bytes as the body (any Content-Type).
        return self.builder.with_body(
            "PUT", f"/v1/sessions/{session_id}/files/{path}", text.encode()
        )

    async def put_file(self, session_id: str, path: str, text: str) -> None:
        await self.call("PUT", path, raw=self.put_raw(session_id, path, text))

    async def checkpoint(self, session_id: str) -> str:
        doc = await self.call("POST", f"/v1/sessions/{session_id}/checkpoints", {}, 201)
        return str(doc["checkpoint"]["id"])


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


async def create_session(
    client: Client, files: dict[str, str], title: str
) -> tuple[str, float, int]:
    """``POST /v1/sessions {"source": {"files"}}``; (id, seconds, request body bytes)."""
    body = dumps({"title": title, "tags": ["bench"], "source": {"files": files}})
    if len(body) > SERVER_BODY_BYTES:
        raise RuntimeError(
            f"the {len(files):,}-file create body is {len(body):,} bytes, above the server's "
            f"{SERVER_BODY_BYTES:,}-byte limit (make FILE_BYTES smaller)"
        )
    raw = client.builder.with_body("POST", "/v1/sessions", body)
    t0 = time.perf_counter()
    doc = await client.call("POST", "/v1/sessions", expected=201, raw=raw)
    took = time.perf_counter() - t0
    return str(doc["session"]["id"]), took, len(body)


# --------------------------------------------------------------------------------------
# SQLite size
# --------------------------------------------------------------------------------------


def db_pages(path: Path) -> dict[str, int]:
    """page_count x page_size (and the free pages) through a read-only connection; works
    while the server runs (WAL: the reader sees the last committed state, WAL included)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        con.close()
    return {"bytes": pages * page_size, "free_bytes": free * page_size, "page_size": page_size}


def db_files_after_truncate(path: Path) -> dict[str, int]:
    """Server stopped: ``PRAGMA wal_checkpoint(TRUNCATE)``, then the db + -wal file sizes."""
    con = sqlite3.connect(str(path), timeout=30)
    try:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"wal_checkpoint(TRUNCATE) on {path} was blocked")
        db = path.stat().st_size
        wal_path = path.with_name(path.name + "-wal")
        wal = wal_path.stat().st_size if wal_path.exists() else 0
    finally:
        con.close()
    return {"db": db, "wal": wal, "bytes": db + wal}


def db_breakdown(path: Path, top: int = 5) -> list[tuple[str, int]]:
    """The largest tables / indexes (bytes) from the ``dbstat`` virtual table, and the
    biggest columns of ``checkpoints``; [] when this SQLite lacks dbstat."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        out = [
            (str(name), int(size))
            for name, size in con.execute(
                "SELECT name, SUM(pgsize) AS s FROM dbstat GROUP BY name ORDER BY s DESC LIMIT ?",
                (top,),
            )
        ]
        cols = [r[1] for r in con.execute("PRAGMA table_info(checkpoints)")]
        for col in cols:
            if col == "changes":  # per-path change figures, copied into every checkpoint
                size = con.execute(
                    f'SELECT SUM(LENGTH(CAST("{col}" AS BLOB))) FROM checkpoints'
                ).fetchone()[0]
                out.append((f"checkpoints.{col} (data)", int(size or 0)))
        return out
    except sqlite3.Error:
        return []
    finally:
        con.close()


def mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    part: str  # ops | messages | diff
    op: str
    size: int  # files (ops, diff) or messages (messages)
    requests: int
    ops_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: int
    target: str = "—"
    verdict: str = "—"
    server_cpu_pct: float | None = None
    other_cpu_pct: float | None = None
    note: str = ""
    error_samples: list[str] = field(default_factory=list)


def judge(row: Row, max_p99: float) -> None:
    row.target = f"p99 < {max_p99:g} ms"
    ok = row.errors == 0 and row.requests > 0 and row.p99_ms is not None
    row.verdict = "ok" if ok and row.p99_ms is not None and row.p99_ms < max_p99 else "MISS"


def row_from(part: str, op: str, size: int, res: load.Result, other: float | None) -> Row:
    return Row(
        part=part,
        op=op,
        size=size,
        requests=res.requests,
        ops_per_s=res.ops_per_s,
        p50_ms=res.p50_ms,
        p99_ms=res.p99_ms,
        max_ms=res.max_ms,
        errors=res.errors,
        server_cpu_pct=res.server_cpu_pct,
        other_cpu_pct=other,
        error_samples=res.error_samples,
    )


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}%"


def _ops(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def flat_lines(rows: list[Row], unit: str) -> list[str]:
    """Per op: p99 by size, flat if the worst p99 above the smallest size is within
    FLAT_RATIO x or +FLAT_SLACK_MS of the smallest size's."""
    out = []
    for op in OPS:
        mine = sorted(
            (r for r in rows if r.op == op and r.p99_ms is not None), key=lambda r: r.size
        )
        if len(mine) < 2:
            continue
        small = mine[0].p99_ms
        big = max(r.p99_ms for r in mine[1:] if r.p99_ms is not None)
        assert small is not None
        flat = big <= small * FLAT_RATIO or big - small <= FLAT_SLACK_MS
        sizes = " → ".join(f"{r.size:,}" for r in mine)
        p99s = " → ".join(_ms(r.p99_ms) for r in mine)
        out.append(
            f"   {op:<10} p99 {p99s} ms ({sizes} {unit})   "
            f"{'flat' if flat else 'NOT FLAT'} ({big / small:.2f}x)"
        )
    return out


# --------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server: msgbench.BenchServer | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.key = ""
        self.builder: RequestBuilder | None = None
        self.client: Client | None = None
        self.rows: list[Row] = []
        self.info: dict[str, Any] = {}
        self.rc = 0
        self.profiles: list[str] = []

    # ---- server ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self.server is None or self.server.proc is None else self.server.proc.pid

    @property
    def db_path(self) -> Path:
        assert self.server is not None
        return self.server.data_dir / DB_FILE

    async def start(self, first: bool) -> None:
        assert self.server is not None
        self.server.start()
        self.key = await self.server.wait_ready(self.args.startup_timeout)
        verb = "started" if first else "restarted"
        print(f"{verb} sessiond pid {self.pid} on {self.server.url}, data {self.server.data_dir}")
        self.port = self.server.port
        self.builder = RequestBuilder(self.host, self.port, self.key)
        if self.client is not None:
            self.client.close()
        self.client = Client(self.host, self.port, self.builder)

    def halt(self) -> None:
        assert self.server is not None
        if self.client is not None:
            self.client.close()
        self.server.halt()

    def alive(self) -> None:
        s = self.server
        if s is not None and s.proc is not None and s.proc.poll() is not None:
            raise RuntimeError("sessiond died during the run\n" + s.log_tail())

    # ---- measuring ---------------------------------------------------------------------

    def _py_spy(self, label: str) -> subprocess.Popen[bytes] | None:
        if not self.args.py_spy or self.pid is None:
            return None
        out_dir = Path(self.args.py_spy)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{label}.txt"
        self.profiles.append(str(out))
        exe = Path(sys.executable).with_name("py-spy")
        return subprocess.Popen(
            [
                str(exe if exe.exists() else "py-spy"),
                "record",
                "--gil",
                "--rate",
                "100",
                "--format",
                "raw",
                "--pid",
                str(self.pid),
                "--output",
                str(out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def _py_spy_stop(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    async def measure(self, part: str, op: str, size: int, factory: load.RequestFactory) -> Row:
        """One closed-loop row at 1 connection through load.py's measurement loop."""
        self.alive()
        pid = self.pid
        spy = self._py_spy(f"{part}-{op}-{size}")
        busy0, wall0 = msgbench.machine_busy()
        try:
            res = await load.run_scenario(
                op,
                1,
                self.host,
                self.port,
                factory,
                seconds=self.args.seconds,
                max_requests=self.args.max_requests,
                warmup=self.args.warmup,
                server_pids=lambda: load.process_tree(pid) if pid is not None else [],
            )
        finally:
            self._py_spy_stop(spy)
        busy1, wall1 = msgbench.machine_busy()
        other = None
        if res.server_cpu_pct is not None and res.driver_cpu_pct is not None:
            total = 100.0 * (busy1 - busy0) / max(wall1 - wall0, 1e-9)
            if total == total:  # not NaN
                other = max(0.0, total - res.server_cpu_pct - res.driver_cpu_pct)
        row = row_from(part, op, size, res, other)
        self.rows.append(row)
        await asyncio.sleep(0.2)
        return row

    async def three_ops(
        self, part: str, session_id: str, size: int, edit_index: int, salt: str
    ) -> None:
        """checkpoint, restore (A/B differing by one edited file), fork — one row each."""
        assert self.client is not None and self.builder is not None
        b = self.builder
        base = f"/v1/sessions/{session_id}"
        unit = "messages" if part == "messages" else "files"

        # Two checkpoints that differ by one edited file; the session is left at A so the
        # measured restores go B, A, B, ... (each one changes that file).
        cp_a = await self.client.checkpoint(session_id)
        path = file_path(edit_index)
        await self.client.put_file(session_id, path, file_text(edit_index, salt, version=1_000_000))
        cp_b = await self.client.checkpoint(session_id)
        doc = await self.client.call(
            "POST", f"{base}/restore", {"checkpointId": cp_a, "scope": "all"}, 200
        )
        if not str(doc.get("undoCheckpointId", "")).startswith("cp_"):
            load.loud(f"RESPONSE CHECK FAILED: restore answered {str(doc)[:300]}")
            self.rc = 1
        doc = await self.client.call("POST", f"{base}/fork", {}, 201)
        if doc["session"].get("parentId") != session_id:
            load.loud(f"RESPONSE CHECK FAILED: fork answered {str(doc)[:300]}")
            self.rc = 1

        checkpoint_req = b.with_body("POST", f"{base}/checkpoints", b"{}")
        restore_reqs = [
            b.with_body("POST", f"{base}/restore", dumps({"checkpointId": cp, "scope": "all"}))
            for cp in (cp_b, cp_a)
        ]
        fork_req = b.with_body("POST", f"{base}/fork", b"{}")
        factories: dict[str, load.RequestFactory] = {
            "checkpoint": lambda w, it: checkpoint_req,
            "restore": lambda w, it: restore_reqs[it % 2],
            "fork": lambda w, it: fork_req,
        }
        for op in OPS:
            row = await self.measure(part, op, size, factories[op])
            judge(row, OP_MAX_P99_MS)
            print(
                f"  {op:<10} @{size:<7,} {unit:<8} {_ops(row.ops_per_s):>6}/s  "
                f"p50 {_ms(row.p50_ms)} ms  p99 {_ms(row.p99_ms)} ms  errors {row.errors}",
                flush=True,
            )

    # ---- parts ---------------------------------------------------------------------------

    async def storage(self, session_id: str, n_files: int, salt: str, ws_raw: int) -> None:
        """Part 4: ``--checkpoints`` rounds of PUT one file + POST checkpoint."""
        assert self.client is not None
        count = self.args.checkpoints
        before = db_pages(self.db_path)
        # Distinct files spread over all directories (7919 is prime: i -> 7919 i mod n is a
        # permutation when n is not a multiple of it).
        indexes = [(k * 7919) % n_files for k in range(count)]
        edits_raw = 0
        put_lat: list[float] = []
        cp_lat: list[float] = []
        spy = self._py_spy(f"storage-{n_files}")
        t0 = time.perf_counter()
        try:
            for k, i in enumerate(indexes):
                text = file_text(i, salt, version=k + 1)
                edits_raw += len(text.encode())
                raw = self.client.put_raw(session_id, file_path(i), text)
                a = time.perf_counter()
                await self.client.call("PUT", "(edit)", raw=raw)
                b = time.perf_counter()
                await self.client.checkpoint(session_id)
                c = time.perf_counter()
                put_lat.append(b - a)
                cp_lat.append(c - b)
        finally:
            self._py_spy_stop(spy)
        took = time.perf_counter() - t0
        after = db_pages(self.db_path)
        self.info["storage"] = {
            "files": n_files,
            "checkpoints": count,
            "distinct_files_edited": len(set(indexes)),
            "workspace_raw_bytes": ws_raw,
            "edits_raw_bytes": edits_raw,
            "db_before_bytes": before["bytes"],
            "db_after_bytes": after["bytes"],
            "db_after_free_bytes": after["free_bytes"],
            "seconds": took,
            "put_p50_ms": load.percentile(sorted(put_lat), 0.5) * 1e3 if put_lat else None,
            "put_p99_ms": load.percentile(sorted(put_lat), 0.99) * 1e3 if put_lat else None,
            "checkpoint_p50_ms": load.percentile(sorted(cp_lat), 0.5) * 1e3 if cp_lat else None,
            "checkpoint_p99_ms": load.percentile(sorted(cp_lat), 0.99) * 1e3 if cp_lat else None,
            "checkpoint_last100_p50_ms": (
                load.percentile(sorted(cp_lat[-100:]), 0.5) * 1e3 if cp_lat else None
            ),
        }
        print(
            f"  storage: {count:,} x (PUT one file + checkpoint) in {took:.1f} s; "
            f"db {mb(before['bytes'])} → {mb(after['bytes'])} (page_count x page_size)",
            flush=True,
        )

    def git_clone(self, session_id: str) -> tuple[float, int]:
        """Time ``git clone`` of the session with the real git client (-1 s: no git)."""
        if shutil.which("git") is None:
            return -1.0, 0
        with tempfile.TemporaryDirectory() as tmp:
            url = f"http://bench:{self.key}@{self.host}:{self.port}/v1/sessions/{session_id}/git"
            t0 = time.perf_counter()
            done = subprocess.run(
                ["git", "clone", "-q", url, f"{tmp}/repo"],
                capture_output=True,
                text=True,
                timeout=600,
                env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": tmp},
            )
            took = time.perf_counter() - t0
            if done.returncode != 0:
                load.loud(f"git clone failed: {done.stderr.strip()[:300]}")
                self.rc = 1
                return took, 0
            files = int(
                subprocess.run(
                    ["git", "ls-files"], cwd=f"{tmp}/repo", capture_output=True, text=True
                ).stdout.count("\n")
            )
        return took, files

    async def diff(self, session_id: str, n_files: int, salt: str) -> None:
        """Part 3: 10 changed files against a fresh checkpoint, uncached then repeated."""
        assert self.client is not None and self.builder is not None
        changed = self.args.diff_files
        step = max(1, n_files // changed)
        indexes = [(k * step + k % step) % n_files for k in range(changed)]  # spread out
        cp = await self.client.checkpoint(session_id)
        version = 2_000_000  # above the other parts' versions: always a new blob
        for i in indexes:
            version += 1
            await self.client.put_file(session_id, file_path(i), file_text(i, salt, version))
        diff_raw = self.builder.get(f"/v1/sessions/{session_id}/diff?from={cp}")
        doc = await self.client.call("GET", "(diff)", raw=diff_raw)
        got = doc.get("summary", {}).get("files")
        if got != changed or len(doc.get("files", [])) != changed:
            load.loud(f"RESPONSE CHECK FAILED: diff shows {got} files, expected {changed}")
            self.rc = 1

        # Uncached: edit one of the 10 files again (new head tree → a new tree pair), then
        # time the first diff of that pair. The edit is not timed.
        lat: list[float] = []
        errors = 0
        samples: list[str] = []
        spy = self._py_spy(f"diff-uncached-{n_files}")
        try:
            for k in range(self.args.diff_samples):
                self.alive()
                i = indexes[k % changed]
                version += 1
                await self.client.put_file(session_id, file_path(i), file_text(i, salt, version))
                t0 = time.perf_counter()
                status, body = await self.client.send(diff_raw)
                t1 = time.perf_counter()
                if status == 200:
                    lat.append(t1 - t0)
                else:
                    errors += 1
                    if len(samples) < 3:
                        samples.append(f"HTTP {status}: {body[:200]!r}")
        finally:
            self._py_spy_stop(spy)
        lat.sort()
        row = Row(
            part="diff",
            op="uncached",
            size=n_files,
            requests=len(lat) + errors,
            ops_per_s=len(lat) / sum(lat) if lat else None,
            p50_ms=load.percentile(lat, 0.5) * 1e3 if lat else None,
            p99_ms=load.percentile(lat, 0.99) * 1e3 if lat else None,
            max_ms=lat[-1] * 1e3 if lat else None,
            errors=errors,
            note="first call on a fresh tree pair (1 file re-edited before each call, untimed)",
            error_samples=samples,
        )
        judge(row, DIFF_MAX_P99_MS)
        self.rows.append(row)
        print(
            f"  diff uncached  {row.requests:>5} calls  p50 {_ms(row.p50_ms)} ms  "
            f"p99 {_ms(row.p99_ms)} ms  errors {row.errors}",
            flush=True,
        )
        # Cached: the same pair over and over (the last edit's pair is cached now).
        row = await self.measure("diff", "diff", n_files, lambda w, it: diff_raw)
        row.op = "cached"
        row.note = "the same tree pair repeated"
        judge(row, DIFF_MAX_P99_MS)
        print(
            f"  diff cached    {_ops(row.ops_per_s):>5}/s  p50 {_ms(row.p50_ms)} ms  "
            f"p99 {_ms(row.p99_ms)} ms  errors {row.errors}",
            flush=True,
        )

    async def run(self) -> None:
        args = self.args
        self.server = msgbench.BenchServer(
            load.find_sessiond(args.sessiond), args.server_arg, args.keep_data
        )
        await self.start(first=True)
        assert self.client is not None
        for op in (*OPS, "diff"):
            msgbench.register(op, EXPECTED[op])

        big = max(args.size_list) if args.size_list else 0
        need_big = big > 0 and bool({"ops", "diff", "storage"} & args.parts)
        do_msgs = "messages" in args.parts and bool(args.message_list)

        # Sessions of part 2 (10 files each) exist before the seeding stop.
        msg_sessions: dict[int, str] = {}
        if do_msgs:
            for n in args.message_list:
                sid, _, _ = await create_session(
                    self.client, workspace_files(10, f"msg{n}"), f"messages {n}"
                )
                msg_sessions[n] = sid

        # ---- 5. create the largest workspace, download its snapshot ----------------------
        big_sid = ""
        big_salt = f"ws{big}"
        if need_big:
            files = workspace_files(big, big_salt)
            ws_raw = raw_bytes(files)
            db0 = db_pages(self.db_path)
            big_sid, took, body_bytes = await create_session(self.client, files, f"workspace {big}")
            del files
            print(f"  created the {big:,}-file session in {took:.2f} s", flush=True)
            t0 = time.perf_counter()
            status, snap = await self.client.send(
                self.builder.get(f"/v1/sessions/{big_sid}/snapshot")  # type: ignore[union-attr]
            )
            snap_s = time.perf_counter() - t0
            if status != 200:
                raise RuntimeError(f"snapshot: HTTP {status}: {snap[:300]!r}")
            with tarfile.open(fileobj=io.BytesIO(snap), mode="r:gz") as tar:
                members = sum(1 for m in tar if m.isfile())
            if members != big:
                load.loud(f"RESPONSE CHECK FAILED: snapshot holds {members} files, expected {big}")
                self.rc = 1
            print(f"  snapshot: {len(snap):,} bytes in {snap_s:.2f} s", flush=True)
            clone_s, clone_files = self.git_clone(big_sid)
            print(f"  git clone: {clone_files:,} files in {clone_s:.2f} s", flush=True)
            self.info["create"] = {
                "files": big,
                "seconds": took,
                "body_bytes": body_bytes,
                "raw_bytes": ws_raw,
                "db_before_bytes": db0["bytes"],
                "db_after_bytes": db_pages(self.db_path)["bytes"],
                "snapshot_seconds": snap_s,
                "snapshot_bytes": len(snap),
                "snapshot_tar_bytes": len(gzip.decompress(snap)),
                "snapshot_files": members,
                "clone_seconds": clone_s,
                "clone_files": clone_files,
            }
            del snap

            # ---- 4. storage ------------------------------------------------------------
            if "storage" in args.parts and args.checkpoints > 0:
                await self.storage(big_sid, big, big_salt, ws_raw)

        # ---- stop: file sizes after TRUNCATE, service-layer seeding --------------------
        total_msgs = sum(args.message_list) if do_msgs else 0
        service_seed = do_msgs and args.seed_mode == "service" and total_msgs > 0
        if "storage" in self.info or service_seed:
            self.halt()
            if "storage" in self.info:
                files_after = db_files_after_truncate(self.db_path)
                self.info["storage"]["db_after_file"] = files_after
                self.info["storage"]["breakdown"] = db_breakdown(self.db_path)
                print(
                    f"  server stopped: after wal_checkpoint(TRUNCATE) db {mb(files_after['db'])}"
                    f" + wal {mb(files_after['wal'])}",
                    flush=True,
                )
            if service_seed:
                spec = {msg_sessions[n]: n for n in args.message_list}
                out = subprocess.run(
                    [
                        sys.executable,
                        str(HERE / "messages.py"),
                        "--seed-worker",
                        str(self.server.data_dir),
                        json.dumps(spec),
                    ],
                    capture_output=True,
                    text=True,
                )
                if out.returncode != 0:
                    raise RuntimeError(f"seeding failed:\n{out.stderr[-3000:]}")
                took = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
                self.info["seeding"] = (
                    f"service layer (sessiond.versions.appends.append via bench/messages.py "
                    f"--seed-worker, {msgbench.SEED_BATCH:,} per transaction, server stopped): "
                    f"{total_msgs:,} messages in {took:.1f} s ({total_msgs / took:,.0f}/s)"
                )
                print(f"  seeded {self.info['seeding']}", flush=True)
            await self.start(first=False)
        elif do_msgs and total_msgs:
            t0 = time.perf_counter()
            spec = {msg_sessions[n]: n for n in args.message_list}
            await msgbench.seed_http(self.host, self.port, self.builder, spec, 16)  # type: ignore[arg-type]
            took = time.perf_counter() - t0
            self.info["seeding"] = (
                f"HTTP appends over 16 connections: {total_msgs:,} messages in {took:.1f} s "
                f"({total_msgs / took:,.0f}/s)"
            )
            print(f"  seeded {self.info['seeding']}", flush=True)
        assert self.client is not None

        # ---- 1. checkpoint / restore / fork by workspace size ----------------------------
        # Fresh sessions, the largest one included: the storage session has 1,000 changed
        # paths against its base, which checkpoints copy (measured apart, "edited" rows).
        fresh: dict[int, tuple[str, str]] = {}
        creates = self.info.setdefault("create_other", {})
        for n in args.size_list if "ops" in args.parts else []:
            salt = f"ws{n}-ops"
            sid, took, _ = await create_session(
                self.client, workspace_files(n, salt), f"workspace {n}"
            )
            creates[n] = took
            fresh[n] = (sid, salt)
            await self.three_ops("ops", sid, n, edit_index=n // 2, salt=salt)
        if "ops" in args.parts and "storage" in self.info:
            # For information: the same in the storage session (the largest workspace,
            # 1,000 changed paths vs its base, 1,000+ checkpoints).
            await self.three_ops("edited", big_sid, big, edit_index=big // 2, salt=big_salt)

        # ---- 2. by conversation length -----------------------------------------------------
        if do_msgs:
            for n in args.message_list:
                page = await self.client.call(
                    "GET", f"/v1/sessions/{msg_sessions[n]}/messages?order=desc&limit=1"
                )
                last = page["messages"][0]["seq"] if page.get("messages") else 0
                if last != n:
                    load.loud(f"RESPONSE CHECK FAILED: session holds {last} messages, not {n}")
                    self.rc = 1
                await self.three_ops("messages", msg_sessions[n], n, edit_index=5, salt=f"msg{n}")

        # ---- 3. diff -------------------------------------------------------------------------
        if "diff" in args.parts and big:
            sid, salt = fresh.get(big, (big_sid, big_salt))
            await self.diff(sid, big, salt)

        # ---- RSS ----------------------------------------------------------------------------
        if self.pid is not None:
            mem = load.read_memory_kb(self.pid)
            if mem.get("VmRSS"):
                self.info["rss_mb"] = mem["VmRSS"] / 1024
                self.info["peak_rss_mb"] = mem.get("VmHWM", 0) / 1024


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

OP_HEADER = [
    "size",
    "op",
    "requests",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "target",
    "verdict",
    "srv cpu",
    "other cpu",
]


def op_rows(rows: list[Row]) -> list[list[str]]:
    return [
        [
            f"{r.size:,}",
            r.op,
            f"{r.requests:,}",
            _ops(r.ops_per_s),
            _ms(r.p50_ms),
            _ms(r.p99_ms),
            str(r.errors),
            r.target,
            r.verdict,
            _pct(r.server_cpu_pct),
            _pct(r.other_cpu_pct),
        ]
        for r in rows
    ]


def report(bench: Bench, total_s: float) -> list[str]:
    """Print the tables; returns the list of misses."""
    args = bench.args
    misses: list[str] = []
    print()
    print(
        f"sessiond workspace — SQLite, 1 connection, {args.seconds:g} s or "
        f"{args.max_requests:,} requests per row, {args.warmup:g} s warm-up, "
        f"{os.cpu_count()} CPUs, total {total_s:.0f} s"
    )
    files = [r for r in bench.rows if r.part == "ops"]
    if files:
        print()
        msgbench.print_rows(
            "1. checkpoint / restore / fork by workspace size (files; ~1 KB each, 100 per "
            "directory)  target p99 < 20 ms, flat",
            OP_HEADER,
            op_rows(files),
        )
        for line in flat_lines(files, "files"):
            print(line)
            if "NOT FLAT" in line:
                misses.append("flat: " + line.split()[0] + " by files")
    edited = [r for r in bench.rows if r.part == "edited"]
    if edited:
        st = bench.info.get("storage", {})
        print()
        msgbench.print_rows(
            f"1b. the same in the storage session of part 4: {edited[0].size:,} files, "
            f"{st.get('distinct_files_edited', 0):,} changed paths vs its base, "
            f"{st.get('checkpoints', 0):,}+ checkpoints",
            OP_HEADER,
            op_rows(edited),
        )
    msgs = [r for r in bench.rows if r.part == "messages"]
    if msgs:
        print()
        msgbench.print_rows(
            "2. checkpoint / restore / fork by conversation length (messages; 10-file "
            "session)  target p99 < 20 ms, flat",
            OP_HEADER,
            op_rows(msgs),
        )
        print(f"   seeding: {bench.info.get('seeding', 'none')}")
        for line in flat_lines(msgs, "messages"):
            print(line)
            if "NOT FLAT" in line:
                misses.append("flat: " + line.split()[0] + " by messages")
    diffs = [r for r in bench.rows if r.part == "diff"]
    if diffs:
        print()
        msgbench.print_rows(
            f"3. GET /v1/sessions/{{id}}/diff?from=<checkpoint>, {args.diff_files} changed "
            f"files in a {diffs[0].size:,}-file workspace  target p99 < 50 ms",
            [
                "call",
                "requests",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors",
                "target",
                "verdict",
                "note",
            ],
            [
                [
                    r.op,
                    f"{r.requests:,}",
                    _ms(r.p50_ms),
                    _ms(r.p99_ms),
                    _ms(r.max_ms),
                    str(r.errors),
                    r.target,
                    r.verdict,
                    r.note,
                ]
                for r in diffs
            ],
        )
    st = bench.info.get("storage")
    if st:
        ws, ed = st["workspace_raw_bytes"], st["edits_raw_bytes"]
        after = st["db_after_bytes"]
        ratio = after / (ws + ed)
        ok = ratio < STORAGE_MAX_RATIO
        st["ratio"] = ratio
        st["verdict"] = "ok" if ok else "MISS"
        print()
        print(
            f"4. storage: {st['checkpoints']:,} x (edit one file, checkpoint) in a "
            f"{st['files']:,}-file workspace ({st['distinct_files_edited']:,} distinct files "
            f"edited)  target db < {STORAGE_MAX_RATIO:g} x (workspace + edits)"
        )
        fa = st.get("db_after_file")
        lines = [
            ("workspace files, raw", mb(ws)),
            ("edits, raw (the new file versions)", mb(ed)),
            ("SQLite before (empty-ish db)", mb(bench.info["create"]["db_before_bytes"])),
            ("SQLite with the workspace (before the edits)", mb(st["db_before_bytes"])),
            (
                "SQLite after the edits and checkpoints",
                f"{mb(after)}  (free pages {mb(st['db_after_free_bytes'])})",
            ),
        ]
        if fa:
            lines.append(
                (
                    "  same, files after wal_checkpoint(TRUNCATE)",
                    f"{mb(fa['bytes'])} (db {mb(fa['db'])} + wal {mb(fa['wal'])})",
                )
            )
        lines += [
            (
                "growth per round (edit + checkpoint)",
                f"{(after - st['db_before_bytes']) / max(1, st['checkpoints']) / 1e3:,.1f} kB",
            ),
            (
                "ratio db after / (workspace + edits)",
                f"{ratio:.2f}x   target < {STORAGE_MAX_RATIO:g}x   verdict "
                f"{'ok' if ok else 'MISS'}",
            ),
            (
                "latency of the rounds (info)",
                f"PUT p50 {_ms(st['put_p50_ms'])} / p99 {_ms(st['put_p99_ms'])} ms, checkpoint "
                f"p50 {_ms(st['checkpoint_p50_ms'])} / p99 {_ms(st['checkpoint_p99_ms'])} ms "
                f"(last 100: p50 {_ms(st['checkpoint_last100_p50_ms'])} ms), "
                f"{st['seconds']:.1f} s",
            ),
        ]
        width = max(len(k) for k, _ in lines)
        for k, v in lines:
            print(f"   {k.ljust(width)}  {v}")
        if st.get("breakdown"):
            print(
                "   largest: " + ", ".join(f"{name} {mb(size)}" for name, size in st["breakdown"])
            )
        if not ok:
            misses.append(f"storage {ratio:.2f}x")
    cr = bench.info.get("create")
    if cr:
        print()
        print("5. for information")
        print(
            f"   create a {cr['files']:,}-file session (one POST /v1/sessions, "
            f"{mb(cr['body_bytes'])} JSON, {mb(cr['raw_bytes'])} of files): {cr['seconds']:.2f} s"
            f"  (db +{mb(cr['db_after_bytes'] - cr['db_before_bytes'])})"
        )
        print(
            f"   download its snapshot (GET .../snapshot): {cr['snapshot_seconds']:.2f} s, "
            f"{mb(cr['snapshot_bytes'])} gzip ({mb(cr['snapshot_tar_bytes'])} tar, "
            f"{cr['snapshot_files']:,} files)"
        )
        print(
            f"   git clone it (real git client, loopback): {cr['clone_seconds']:.2f} s, "
            f"{cr['clone_files']:,} files"
        )
        other = bench.info.get("create_other") or {}
        if other:
            print(
                "   create (other sizes): "
                + ", ".join(f"{n:,} files {s * 1e3:,.0f} ms" for n, s in sorted(other.items()))
            )
    print()
    if "rss_mb" in bench.info:
        print(
            f"server RSS at the end: {bench.info['rss_mb']:.1f} MB "
            f"(peak {bench.info['peak_rss_mb']:.1f} MB)"
        )
    misses += [f"{r.part} {r.op} @{r.size:,}" for r in bench.rows if r.verdict == "MISS"]
    if bench.profiles:
        print("py-spy profiles (raw collapsed stacks): " + ", ".join(bench.profiles))
    return misses


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=3.0, help="measured time per row")
    p.add_argument("--max-requests", type=int, default=20_000, help="measured requests cap per row")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured warm-up per row")
    p.add_argument(
        "--sizes",
        default="10,1000,10000",
        help="workspace sizes in files (comma list, ≤ 10,000); the largest is used for "
        "diff, storage, create and snapshot",
    )
    p.add_argument(
        "--messages", default="10,100000", help="conversation lengths of part 2 (comma list)"
    )
    p.add_argument(
        "--checkpoints", type=int, default=1000, help="edit + checkpoint rounds of the storage part"
    )
    p.add_argument("--diff-files", type=int, default=10, help="changed files in the diff part")
    p.add_argument(
        "--diff-samples", type=int, default=200, help="uncached diff calls (one fresh pair each)"
    )
    p.add_argument("--only", default=None, help="comma-separated subset of: " + ",".join(PARTS))
    p.add_argument(
        "--seed-mode",
        choices=("service", "http"),
        default="service",
        help="how part 2's messages are seeded",
    )
    p.add_argument(
        "--py-spy",
        default=None,
        metavar="DIR",
        help="record each measured row with `py-spy record --gil` into DIR (raw format)",
    )
    p.add_argument("--json", dest="json_path", default=None, help="also write raw figures here")
    p.add_argument("--sessiond", default=None, help="sessiond executable (default: the venv's)")
    p.add_argument(
        "--server-arg", action="append", default=[], help="extra `sessiond serve` argument"
    )
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument("--keep-data", action="store_true", help="keep the temp data dir and log")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    try:
        args.size_list = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
        args.message_list = sorted({int(s) for s in args.messages.split(",") if s.strip()})
    except ValueError:
        p.error("--sizes and --messages take integers")
    if args.size_list and (min(args.size_list) < 10 or max(args.size_list) > MAX_SOURCE_FILES):
        p.error(f"--sizes must be between 10 and {MAX_SOURCE_FILES:,} files")
    if args.message_list and min(args.message_list) < 1:
        p.error("--messages must be positive")
    if args.diff_files < 1 or (args.size_list and args.diff_files > max(args.size_list)):
        p.error("--diff-files must be between 1 and the largest size")
    if args.only:
        chosen = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = sorted(chosen - set(PARTS))
        if unknown:
            p.error(f"unknown part(s): {', '.join(unknown)}")
        args.parts = chosen
    else:
        args.parts = set(PARTS)
    return args


async def amain(args: argparse.Namespace) -> int:
    me = asyncio.current_task()
    if me is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    bench = Bench(args)
    meta: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "loop": type(asyncio.get_running_loop()).__module__,
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "parts"},
    }
    t_start = time.perf_counter()
    try:
        await bench.run()
    finally:
        if bench.client is not None:
            bench.client.close()
        if bench.server is not None:
            meta["server_exit_code"] = bench.server.stop()
    misses = report(bench, time.perf_counter() - t_start)
    rc = bench.rc
    failed = [r for r in bench.rows if r.errors]
    if failed:
        load.loud(
            "\n".join(
                f"ERRORS: {r.part} {r.op} @{r.size}: {r.errors} of {r.requests}; "
                f"e.g. {r.error_samples[:2]}"
                for r in failed
            )
        )
        rc = 1
    if misses:
        print("targets missed: " + ", ".join(misses))
        if args.fail_on_miss and rc == 0:
            rc = 3
    if args.json_path:
        doc = {
            "meta": meta,
            "rows": [asdict(r) for r in bench.rows],
            "info": bench.info,
            "misses": misses,
        }
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
            return uvloop.run(amain(args))
        return asyncio.run(amain(args))
    except RuntimeError as exc:
        load.loud(f"bench failed: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        return 143


if __name__ == "__main__":
    sys.exit(main())
