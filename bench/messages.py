"""Conversation benchmark for sessiond: appending messages and reading pages of them.

Reuses ``bench/load.py``'s lean keep-alive HTTP client, measurement loop and server
management (imported, not copied). What it measures, each row next to its target:

1. **append** — ``POST /v1/sessions/{id}/messages`` ``{role, content}`` (~200-byte text,
   user/assistant alternating) at 1 connection, at 16 connections on 16 sessions (one
   per connection; the target row) and at 16 connections all on one session.
2. **pages** — ``GET /v1/sessions/{id}/messages`` pages of 50 in sessions holding 10 /
   10,000 / 100,000 messages: ``after=<random seq>``, ``order=desc`` (the end) and
   ``before=<random seq>``, at 1 and 16 connections; p50/p99 per size and whether the
   p99 stays flat as the session grows.

The large sessions are seeded through the service layer
(``sessiond.versions.appends.append``, 1,000 per transaction) directly on the
server's SQLite file while the server is stopped: the driver starts ``sessiond serve``
once (bootstrap, admin key, sessions created over HTTP), stops it, seeds in a child
process, and starts it again on the same data directory. With ``--url`` (a running
server) or ``--seed-mode http`` the messages are appended over HTTP instead.

Run on demand, never by the test suite::

    .venv/bin/python bench/messages.py                          # everything, ~3 min
    .venv/bin/python bench/messages.py --seconds 2 --sizes 10,10000
    .venv/bin/python bench/messages.py --only append --server-arg=--no-access-log

See the "Messages" section of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# bench/ is not a package: ``python bench/messages.py`` has it on sys.path already.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import load  # noqa: E402  (bench/load.py: client, measurement loop, server management)

HttpConnection = load.HttpConnection
RequestBuilder = load.RequestBuilder
Result = load.Result

# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------

APPEND_1_MIN_OPS = 1000.0  # 1 connection
APPEND_16_MIN_OPS = 2000.0  # 16 connections, 16 sessions
APPEND_16_MAX_P99_MS = 25.0
PAGE_MAX_P99_MS = 10.0  # every size, every mode, every connection count
FLAT_RATIO = 1.5  # "flat": p99 at the largest size within 1.5x of the smallest ...
FLAT_SLACK_MS = 1.0  # ... or within 1 ms of it
PAGE_MODES: tuple[str, ...] = ("after", "desc", "before")
SEED_BATCH = 1000

# --------------------------------------------------------------------------------------
# Message content (~200 bytes of plain text, deterministic)
# --------------------------------------------------------------------------------------

_WORDS = " ".join(
    (
        "the agent reads the failing test and opens src/parser.py to check how the tokenizer",
        "handles nested brackets then proposes a patch that keeps the public API stable adds",
        "a regression test and runs the suite again before asking for review of the change",
        "in the session workspace with a short summary of what was tried and why it works",
    )
).split()


def message_text(n: int, size: int = 200) -> str:
    """About ``size`` bytes of English-like text, different for each ``n``."""
    rng = random.Random(n)
    words: list[str] = []
    length = 0
    while length < size:
        w = rng.choice(_WORDS)
        words.append(w)
        length += len(w) + 1
    text = " ".join(words)[: size - 1]
    return text[0].upper() + text[1:] + "."


ROLES = ("user", "assistant")
TEXTS = [message_text(i) for i in range(256)]


def append_body(n: int) -> bytes:
    """JSON body of the ``n``-th append: role alternates, text cycles over 256 variants."""
    return json.dumps(
        {"role": ROLES[n % 2], "content": TEXTS[n % len(TEXTS)]},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


# --------------------------------------------------------------------------------------
# Seeding through the service layer (runs in a child process, server stopped)
# --------------------------------------------------------------------------------------


def _seed_account_of(tx: Any, session_id: str) -> str:
    import sqlalchemy as sa

    from sessiond.db import tables as t

    return tx.conn.execute(  # type: ignore[no-any-return]
        sa.select(t.sessions.c.account_id).where(t.sessions.c.id == session_id)
    ).scalar_one()


def _seed_batch(
    tx: Any, limits: Any, account_id: str, session_id: str, bodies: list[Any], start: int, n: int
) -> int:
    """One transaction: append messages ``start .. start + n - 1``; the last seq."""
    from sessiond.versions import appends

    last = 0
    for i in range(start, start + n):
        message = appends.append(tx, limits, account_id, session_id, bodies[i % len(bodies)])
        last = message["seq"]
    return last


def seed_worker(data_dir: str, spec_json: str) -> int:
    """``--seed-worker DATA_DIR '{"ses_..": N, ...}'``: append N messages to each session
    through ``sessiond.versions.appends.append``, ``SEED_BATCH`` per transaction.
    Prints one JSON line ``{"seconds", "messages"}``."""
    from sessiond.conversation.models import MessageCreate
    from sessiond.db.executor import Database
    from sessiond.settings import Settings

    spec: dict[str, int] = json.loads(spec_json)
    settings = Settings(data_dir=Path(data_dir))
    db = Database(settings.resolved_database_url(), readers=1)
    db.start()
    bodies = [
        MessageCreate(role=ROLES[i % 2], content=TEXTS[i % len(TEXTS)])
        for i in range(2 * len(TEXTS))
    ]
    t0 = time.perf_counter()
    total = 0
    try:
        for session_id, count in spec.items():
            account_id = db.read_sync(_seed_account_of, session_id)
            done = 0
            while done < count:
                n = min(SEED_BATCH, count - done)
                last_seq = db.write_sync(
                    _seed_batch, settings.limits, account_id, session_id, bodies, done, n
                )
                done += n
                if last_seq != done:
                    raise RuntimeError(f"seed: {session_id} at seq {last_seq}, expected {done}")
            total += count
    finally:
        db.close()
    print(json.dumps({"seconds": time.perf_counter() - t0, "messages": total}), flush=True)
    return 0


class BenchServer(load.ManagedServer):
    """``ManagedServer`` that can be stopped and started again on the same data dir."""

    def start(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
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
        if self._log is None or self._log.closed:
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def halt(self, timeout: float = 10.0) -> None:
        """Stop the process by its PID (SIGTERM, SIGKILL after ``timeout``); keep the data."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------


async def create_sessions(
    host: str, port: int, builder: RequestBuilder, count: int, title: str
) -> list[str]:
    conn = HttpConnection(host, port)
    ids: list[str] = []
    try:
        for i in range(count):
            body = json.dumps({"title": f"{title} {i}", "tags": ["bench"]}).encode()
            status, resp = await conn.request(builder.with_body("POST", "/v1/sessions", body))
            if status != 201:
                raise RuntimeError(f"POST /v1/sessions: HTTP {status}: {resp[:300]!r}")
            ids.append(json.loads(resp)["session"]["id"])
    finally:
        conn.close()
    return ids


async def seed_http(
    host: str, port: int, builder: RequestBuilder, spec: dict[str, int], connections: int = 16
) -> None:
    """Append ``spec[session]`` messages to each session over ``connections`` connections."""
    jobs = [(sid, i) for sid, n in spec.items() for i in range(n)]
    next_job = 0
    failures: list[str] = []

    async def work() -> None:
        nonlocal next_job
        conn = HttpConnection(host, port)
        try:
            while next_job < len(jobs) and len(failures) < 10:
                sid, i = jobs[next_job]
                next_job += 1
                raw = builder.with_body("POST", f"/v1/sessions/{sid}/messages", append_body(i))
                status, body = await conn.request(raw)
                if status != 201:
                    failures.append(f"HTTP {status}: {body[:200]!r}")
        finally:
            conn.close()

    await asyncio.gather(*(work() for _ in range(connections)))
    if failures:
        raise RuntimeError(f"HTTP seeding failed: {failures[0]}")


async def one_request(host: str, port: int, raw: bytes) -> tuple[int, bytes]:
    conn = HttpConnection(host, port)
    try:
        return await conn.request(raw)
    finally:
        conn.close()


def check_append(status: int, body: bytes) -> str | None:
    if status != 201:
        return f"append: HTTP {status} (expected 201): {body[:300]!r}"
    try:
        msg = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return f"append: no message in {body[:300]!r}"
    if not isinstance(msg.get("seq"), int) or not str(msg.get("id", "")).startswith("msg_"):
        return f"append: message without id/seq: {body[:300]!r}"
    return None


def check_page(mode: str, size: int, limit: int, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"page {mode}@{size}: HTTP {status}: {body[:300]!r}"
    try:
        seqs = [m["seq"] for m in json.loads(body)["messages"]]
    except (ValueError, KeyError, TypeError):
        return f"page {mode}@{size}: unexpected body {body[:300]!r}"
    want = min(limit, size)
    if len(seqs) != want:
        return f"page {mode}@{size}: {len(seqs)} messages, expected {want}"
    step = -1 if mode == "desc" else 1
    if any(b - a != step for a, b in itertools.pairwise(seqs)):
        return f"page {mode}@{size}: seqs not consecutive: {seqs[:5]}..."
    if mode == "desc" and seqs[0] != size:
        return f"page desc@{size}: first seq {seqs[0]}, expected {size}"
    return None


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    part: str  # "append" | "page"
    label: str
    connections: int
    result: load.Result
    size: int | None = None
    mode: str | None = None
    sessions: int | None = None
    target: str = "—"
    verdict: str = "—"
    other_cpu_pct: float | None = None  # CPU used by other processes on the machine


def judge(row: Row, min_ops: float | None, max_p99: float | None) -> None:
    r = row.result
    parts = []
    if min_ops is not None:
        parts.append(f"≥ {min_ops:,.0f}/s")
    if max_p99 is not None:
        parts.append(f"p99 < {max_p99:g} ms")
    row.target = ", ".join(parts) if parts else "—"
    if not parts:
        return
    ok = r.errors == 0 and r.ok > 0
    if min_ops is not None and r.ops_per_s < min_ops:
        ok = False
    if max_p99 is not None and (r.p99_ms is None or r.p99_ms >= max_p99):
        ok = False
    row.verdict = "ok" if ok else "MISS"


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, wall clock) from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(x) for x in fields]
        busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # minus idle, iowait
        return busy / load._CLK_TCK, time.perf_counter()
    except (OSError, ValueError, IndexError):
        return float("nan"), time.perf_counter()


def register(scenario: str, expected: int) -> None:
    """Teach load.py's measurement loop this scenario name (this process only)."""
    load.EXPECTED_STATUS[scenario] = expected
    load.TARGETS[scenario] = load.Target()  # judged here, not by load.judge


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}%"


def print_rows(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=4.0, help="measured time per row")
    p.add_argument("--max-requests", type=int, default=20_000, help="measured requests cap per row")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured warm-up per row")
    p.add_argument("--connections", default="1,16", help="connection counts to run")
    p.add_argument(
        "--sizes", default="10,10000,100000", help="messages in the paged sessions (comma list)"
    )
    p.add_argument("--limit", type=int, default=50, help="page size")
    p.add_argument("--modes", default=",".join(PAGE_MODES), help="page modes to run, in this order")
    p.add_argument("--only", default=None, help="append or page (default: both)")
    p.add_argument(
        "--seed-mode",
        choices=("service", "http"),
        default=None,
        help="how to fill the paged sessions (default: service; http with --url)",
    )
    p.add_argument("--json", dest="json_path", default=None, help="also write raw figures here")
    p.add_argument("--url", default=None, help="use this running server (loopback only)")
    p.add_argument("--key", default=None, help="API key for --url")
    p.add_argument("--pid", type=int, default=None, help="server PID for RSS/CPU with --url")
    p.add_argument("--sessiond", default=None, help="sessiond executable (default: the venv's)")
    p.add_argument(
        "--server-arg", action="append", default=[], help="extra `sessiond serve` argument"
    )
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument("--keep-data", action="store_true", help="keep the temp data dir and log")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    p.add_argument("--rng-seed", type=int, default=1, help="seed of the random page positions")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    try:
        args.conn_counts = sorted({int(c) for c in args.connections.split(",") if c.strip()})
        args.size_list = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        p.error("--connections and --sizes take integers")
    if not args.conn_counts or min(args.conn_counts) < 1:
        p.error("--connections must be positive")
    if args.size_list and min(args.size_list) < 1:
        p.error("--sizes must be positive")
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.mode_list or set(args.mode_list) - set(PAGE_MODES):
        p.error(f"--modes takes some of {','.join(PAGE_MODES)}")
    if args.only not in (None, "append", "page", "pages"):
        p.error("--only takes append or page")
    args.do_append = args.only in (None, "append")
    args.do_pages = args.only in (None, "page", "pages") and bool(args.size_list)
    if args.url and not args.key:
        p.error("--url needs --key")
    if args.pid is not None and not args.url:
        p.error("--pid only makes sense with --url")
    if args.seed_mode is None:
        args.seed_mode = "http" if args.url else "service"
    if args.url and args.seed_mode == "service":
        p.error("--seed-mode service needs the driver's own server (no --url)")
    return args


async def bench(args: argparse.Namespace) -> int:
    me = asyncio.current_task()
    if me is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    server: BenchServer | None = None
    rows: list[Row] = []
    memory: dict[str, Any] = {}
    rc = 0
    seed_note = "none"
    loop_name = type(asyncio.get_running_loop()).__module__
    meta: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "loop": loop_name,
        "cpus": os.cpu_count(),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "sizes": args.size_list,
        "limit": args.limit,
    }
    t_start = time.perf_counter()
    try:
        if args.url:
            host, port = load.loopback_target(args.url)
            key = args.key
            server_pid: int | None = args.pid
        else:
            server = BenchServer(load.find_sessiond(args.sessiond), args.server_arg, args.keep_data)
            server.start()
            assert server.proc is not None
            print(f"started sessiond pid {server.proc.pid} on {server.url}, data {server.data_dir}")
            key = await server.wait_ready(args.startup_timeout)
            host, port = "127.0.0.1", server.port
            server_pid = server.proc.pid
        builder = RequestBuilder(host, port, key)

        # Sessions: one per size to page through; the append sessions are created later.
        sizes = args.size_list if args.do_pages else []
        page_ids = await create_sessions(host, port, builder, len(sizes), "pages")
        spec = dict(zip(page_ids, sizes, strict=True))
        total = sum(sizes)
        if total:
            t0 = time.perf_counter()
            if args.seed_mode == "service":
                assert server is not None
                server.halt()
                out = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--seed-worker",
                        str(server.data_dir),
                        json.dumps(spec),
                    ],
                    capture_output=True,
                    text=True,
                )
                if out.returncode != 0:
                    raise RuntimeError(f"seeding failed:\n{out.stderr[-3000:]}")
                took = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
                seed_note = (
                    f"service layer (sessiond.versions.appends.append, {SEED_BATCH:,} per "
                    f"db.write_sync transaction) on the SQLite file, server stopped"
                )
                print(
                    f"seeded {total:,} messages ({', '.join(f'{n:,}' for n in sizes)}) via the "
                    f"{seed_note}: {took:.1f} s ({total / took:,.0f} msg/s)"
                )
                server.start()
                assert server.proc is not None
                key = await server.wait_ready(args.startup_timeout)
                server_pid = server.proc.pid
                print(f"restarted sessiond pid {server_pid} on the seeded data")
            else:
                await seed_http(host, port, builder, spec)
                took = time.perf_counter() - t0
                seed_note = "concurrent HTTP appends (16 connections)"
                print(
                    f"seeded {total:,} messages via {seed_note}: {took:.1f} s "
                    f"({total / took:,.0f} msg/s)"
                )
        meta["seeding"] = seed_note

        def server_pids() -> list[int]:
            return load.process_tree(server_pid) if server_pid is not None else []

        def alive() -> None:
            if server is not None and server.proc is not None and server.proc.poll() is not None:
                raise RuntimeError("sessiond died during the run\n" + server.log_tail())

        async def measure(
            scenario: str, n: int, factory: load.RequestFactory
        ) -> tuple[load.Result, float | None]:
            alive()
            busy0, wall0 = machine_busy()
            res = await load.run_scenario(
                scenario,
                n,
                host,
                port,
                factory,
                seconds=args.seconds,
                max_requests=args.max_requests,
                warmup=args.warmup,
                server_pids=server_pids,
            )
            busy1, wall1 = machine_busy()
            # Busy CPU of the whole machine minus server and driver, over the whole row
            # (warm-up included): other processes competing for the 2 cores.
            other = None
            if res.server_cpu_pct is not None and res.driver_cpu_pct is not None:
                total = 100.0 * (busy1 - busy0) / max(wall1 - wall0, 1e-9)
                if total == total:  # not NaN
                    other = max(0.0, total - res.server_cpu_pct - res.driver_cpu_pct)
            await asyncio.sleep(0.2)
            return res, other

        # ---- 1. append ------------------------------------------------------------------
        if args.do_append:
            register("append", 201)
            n_max = max(args.conn_counts)
            own = await create_sessions(host, port, builder, n_max, "append")
            shared = (await create_sessions(host, port, builder, 1, "append shared"))[0]
            problem = check_append(
                *await one_request(
                    host,
                    port,
                    builder.with_body("POST", f"/v1/sessions/{shared}/messages", append_body(0)),
                )
            )
            if problem:
                load.loud(f"RESPONSE CHECK FAILED before measuring: {problem}")
                rc = 1
            own_paths = [f"/v1/sessions/{sid}/messages" for sid in own]
            shared_path = f"/v1/sessions/{shared}/messages"

            def own_factory(worker: int, it: int) -> bytes:
                return builder.with_body("POST", own_paths[worker], append_body(it))

            def shared_factory(worker: int, it: int) -> bytes:
                return builder.with_body("POST", shared_path, append_body(it))

            variants: list[tuple[str, int, Any, int]] = []
            for n in args.conn_counts:
                variants.append((f"{n} sessions" if n > 1 else "1 session", n, own_factory, n))
                if n > 1:
                    variants.append(("1 shared session", n, shared_factory, 1))
            for label, n, factory, n_sessions in variants:
                res, other = await measure("append", n, factory)
                row = Row("append", label, n, res, sessions=n_sessions, other_cpu_pct=other)
                if n == 1:
                    judge(row, APPEND_1_MIN_OPS, None)
                elif n == 16 and n_sessions == 16:
                    judge(row, APPEND_16_MIN_OPS, APPEND_16_MAX_P99_MS)
                elif n_sessions == 1:
                    row.target = "(info)"
                rows.append(row)
                print(
                    f"  append x{n:<3} {label:<17} {res.ops_per_s:>8,.0f}/s  "
                    f"p50 {_ms(res.p50_ms)} ms  p99 {_ms(res.p99_ms)} ms  errors {res.errors}",
                    flush=True,
                )

        # ---- 2. pages -------------------------------------------------------------------
        if args.do_pages:
            register("page", 200)
            rng = random.Random(args.rng_seed)
            limit = args.limit
            for sid, size in spec.items():
                base = f"/v1/sessions/{sid}/messages"
                pools: dict[str, list[bytes]] = {}
                hi_after = max(0, size - limit)  # full pages
                pools["after"] = [
                    builder.get(f"{base}?limit={limit}&after={rng.randint(0, hi_after)}")
                    for _ in range(4096)
                ]
                pools["desc"] = [builder.get(f"{base}?order=desc&limit={limit}")]
                lo_before = min(size, limit) + 1
                pools["before"] = [
                    builder.get(f"{base}?before={rng.randint(lo_before, size + 1)}&limit={limit}")
                    for _ in range(4096)
                ]
                for mode in args.mode_list:
                    pool = pools[mode]
                    problem = check_page(mode, size, limit, *await one_request(host, port, pool[0]))
                    if problem:
                        load.loud(f"RESPONSE CHECK FAILED before measuring: {problem}")
                        rc = 1

                    def factory(worker: int, it: int, pool: list[bytes] = pool) -> bytes:
                        return pool[(worker * 257 + it) % len(pool)]

                    for n in args.conn_counts:
                        res, other = await measure("page", n, factory)
                        row = Row("page", mode, n, res, size=size, mode=mode, other_cpu_pct=other)
                        judge(row, None, PAGE_MAX_P99_MS)
                        rows.append(row)
                        print(
                            f"  page {mode:<6} @{size:<7,} x{n:<3} {res.ops_per_s:>8,.0f}/s  "
                            f"p50 {_ms(res.p50_ms)} ms  p99 {_ms(res.p99_ms)} ms  "
                            f"errors {res.errors}",
                            flush=True,
                        )

        if server_pid is not None:
            pids = server_pids()
            per_proc = {pid: load.read_memory_kb(pid) for pid in pids}
            rss_kb = sum(m.get("VmRSS", 0) for m in per_proc.values())
            hwm_kb = sum(m.get("VmHWM", 0) for m in per_proc.values())
            if rss_kb:
                memory = {
                    "pid": server_pid,
                    "rss_mb": rss_kb / 1024,
                    "peak_rss_mb": hwm_kb / 1024,
                    "target_mb": load.RSS_TARGET_MB,
                    "verdict": "ok" if rss_kb / 1024 < load.RSS_TARGET_MB else "MISS",
                }
    finally:
        if server is not None:
            meta["server_exit_code"] = server.stop()

    # ---- report -------------------------------------------------------------------------
    print()
    print(
        f"sessiond messages — {args.seconds:g} s or {args.max_requests:,} requests per row, "
        f"{args.warmup:g} s warm-up, loop {loop_name}, {os.cpu_count()} CPUs, "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    append_rows = [r for r in rows if r.part == "append"]
    if append_rows:
        print()
        print_rows(
            "1. append POST /v1/sessions/{id}/messages {role, content ~200 B}",
            [
                "conns",
                "sessions",
                "requests",
                "ops/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "target",
                "verdict",
                "srv cpu",
                "drv cpu",
                "other cpu",
            ],
            [
                [
                    str(r.connections),
                    r.label,
                    f"{r.result.requests:,}",
                    f"{r.result.ops_per_s:,.0f}",
                    _ms(r.result.p50_ms),
                    _ms(r.result.p99_ms),
                    str(r.result.errors),
                    r.target,
                    r.verdict,
                    _pct(r.result.server_cpu_pct),
                    _pct(r.result.driver_cpu_pct),
                    _pct(r.other_cpu_pct),
                ]
                for r in append_rows
            ],
        )
    page_rows = [r for r in rows if r.part == "page"]
    flat_lines: list[str] = []
    if page_rows:
        print()
        print(f"2. pages of {args.limit}: GET /v1/sessions/{{id}}/messages  (seeding: {seed_note})")
        print_rows(
            "   after=<random seq> | order=desc (the end) | before=<random seq>",
            [
                "messages",
                "mode",
                "conns",
                "requests",
                "ops/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "target",
                "verdict",
                "srv cpu",
                "other cpu",
            ],
            [
                [
                    f"{r.size:,}",
                    r.label,
                    str(r.connections),
                    f"{r.result.requests:,}",
                    f"{r.result.ops_per_s:,.0f}",
                    _ms(r.result.p50_ms),
                    _ms(r.result.p99_ms),
                    str(r.result.errors),
                    r.target,
                    r.verdict,
                    _pct(r.result.server_cpu_pct),
                    _pct(r.other_cpu_pct),
                ]
                for r in page_rows
            ],
        )
        sizes_run = sorted({r.size for r in page_rows if r.size is not None})
        # Baseline: the smallest session that fills a whole page (a 10-message session
        # answers 10 messages, not 50: a smaller response, not a faster lookup), unless
        # fewer than two sizes do.
        full = [s for s in sizes_run if s >= args.limit]
        base_size = full[0] if len(full) >= 2 else sizes_run[0]
        if len(sizes_run) > 1:
            print()
            print(
                f"   flat? p50 / p99 by size ({' → '.join(f'{s:,}' for s in sizes_run)} "
                f"messages); verdict: the worst p99 above {base_size:,} vs the p99 "
                f"at {base_size:,} "
                f"(flat: ≤ {FLAT_RATIO:g}x or ≤ +{FLAT_SLACK_MS:g} ms)"
            )
            for mode in PAGE_MODES:
                for n in args.conn_counts:
                    mine = {
                        r.size: r.result
                        for r in page_rows
                        if r.mode == mode and r.connections == n and r.size is not None
                    }
                    small = mine[base_size].p99_ms if base_size in mine else None
                    larger = [
                        r.p99_ms for k, r in mine.items() if k > base_size and r.p99_ms is not None
                    ]
                    if small is None or not larger:
                        continue
                    big = max(larger)
                    flat = big <= small * FLAT_RATIO or big - small <= FLAT_SLACK_MS
                    p50s = " → ".join(_ms(mine[s].p50_ms) for s in sizes_run if s in mine)
                    p99s = " → ".join(_ms(mine[s].p99_ms) for s in sizes_run if s in mine)
                    line = (
                        f"   {mode:<6} x{n:<3} p50 {p50s} ms   p99 {p99s} ms   "
                        f"{'flat' if flat else 'NOT FLAT'} ({big / small:.2f}x)"
                    )
                    flat_lines.append(line)
                    print(line)
    print()
    if memory:
        print(
            f"server RSS: {memory['rss_mb']:.1f} MB (peak {memory['peak_rss_mb']:.1f} MB), "
            f"pid {memory['pid']}   (sessions target < {load.RSS_TARGET_MB:.0f} MB: "
            f"{memory['verdict']})"
        )
    else:
        print("server RSS: not measured (pass --pid with --url)")

    failed = [r for r in rows if r.result.errors]
    if failed:
        load.loud(
            "\n".join(
                f"ERRORS: {r.part} {r.label} x{r.connections}"
                + (f" @{r.size}" if r.size else "")
                + f": {r.result.errors} of {r.result.requests}; e.g. {r.result.error_samples[:2]}"
                for r in failed
            )
        )
        rc = 1
    misses = [r for r in rows if r.verdict == "MISS"]
    if misses:
        print(
            "targets missed: "
            + ", ".join(
                f"{r.part} {r.label} x{r.connections}" + (f" @{r.size:,}" if r.size else "")
                for r in misses
            )
        )
        if args.fail_on_miss and rc == 0:
            rc = 3
    if args.json_path:
        doc = {
            "meta": meta,
            "rows": [
                {
                    "part": r.part,
                    "label": r.label,
                    "connections": r.connections,
                    "size": r.size,
                    "mode": r.mode,
                    "sessions": r.sessions,
                    "target": r.target,
                    "verdict": r.verdict,
                    **{k: v for k, v in asdict(r.result).items() if k not in ("target", "verdict")},
                }
                for r in rows
            ],
            "flat": flat_lines,
            "memory": memory,
        }
        Path(args.json_path).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"raw figures written to {args.json_path}")
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--seed-worker"]:
        return seed_worker(argv[1], argv[2])
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
