"""Sandbox bench for sessiond: exec round trip (bwrap and none), hibernate and restore of a
10,000-file session, and what 100 hibernated sessions leave on disk.

Starts ``sessiond serve`` (SQLite) on a fresh temporary data directory and a free
loopback port, once per ``--modes`` entry (``SESSIOND_SANDBOX=auto``, then ``none``), and
checks on ``GET /v1/agents`` which confinement is in force (``sandbox.mode``). Then:

1. **exec** (every server): one session; its first ``POST .../exec {"command": ["true"]}``
   (which writes the sandbox) is reported apart, then 20 warm-up calls and 200 measured
   calls, sequential, on one keep-alive connection: client round trip p50 / p99 / max,
   the command's ``durationMs`` as the server reports it, and the server's CPU per call
   (its own, and its reaped children's: bwrap and the command). Target p99 < 50 ms with
   bwrap.
2. **hibernate** (the first server only): one session, one exec that writes 10,000 small
   files in 100 directories (saved into the working tree by the exec's sync), then
   ``--cycles`` times: ``POST .../sandbox:hibernate`` (target < 2 s), ``POST
   .../sandbox:restore`` (target < 2 s), each timed by the client, and an exec ``find .
   -type f | wc -l`` that must count 10,000. The state in each answer and the directory
   on disk are checked (gone after hibernate, back after restore).
3. **disk** (the first server only): 100 sessions, each with one exec writing 20 files of
   1 KiB from ``/dev/urandom`` (no two alike: the database stores identical blobs once),
   then hibernated; the size of ``<data-dir>/sandboxes`` (walked: files, directories,
   bytes; target: nothing left), and for information the growth of ``sessiond.db`` +
   ``sessiond.db-wal`` over the 100 sessions.

Part 2 also times, without a server, plain creates of as many files beside the data dir,
their removal, and the same creates right after it (the filesystem's floor for a
restore, which follows a hibernation's removal). Each part's CPU steal (``/proc/stat``:
time the hypervisor gave this VM's CPUs to others) is printed: on a busy host it
inflates every figure.

The sessions of parts 1 and 2 are hibernated when their part ends, so part 3 walks a
directory that should hold nothing. Run on demand, never by the test suite::

    .venv/bin/python bench/sandbox.py
    .venv/bin/python bench/sandbox.py --json /tmp/sandbox-bench.json --keep-data

See ``bench/README.md`` § Sandbox for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# bench/ is not a package: ``python bench/sandbox.py`` has it on sys.path already.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import agents  # noqa: E402  (table, log findings, machine CPU)
import load  # noqa: E402  (client, server management, /proc helpers)

EXEC_P99_TARGET_MS = 50.0
HIBERNATE_TARGET_S = 2.0
RESTORE_TARGET_S = 2.0
MODES = ("auto", "bwrap", "none")
PARTS = ("exec", "hibernate", "disk")

# --------------------------------------------------------------------------------------
# Server and client
# --------------------------------------------------------------------------------------


class SandboxServer(load.ManagedServer):
    """``load.ManagedServer`` started with ``SESSIOND_SANDBOX=<mode>``; the temp dir is
    removed by the caller (after the log has been read)."""

    def __init__(
        self, executable: str, extra_args: list[str], mode: str, tmp_dir: str | None
    ) -> None:
        super().__init__(executable, extra_args, keep_data=True)
        self.mode = mode
        if tmp_dir is not None:  # the temp dir under another parent (another filesystem)
            self.tmp.rmdir()
            self.tmp = Path(tempfile.mkdtemp(prefix="sessiond-bench-", dir=tmp_dir))
            self.data_dir = self.tmp / "data"
            self.log_path = self.tmp / "server.log"

    def start(self) -> None:
        self.data_dir.mkdir()
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
        env = {**os.environ, "SESSIOND_SANDBOX": self.mode}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )

    def stop_process(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID, SIGKILL after ``timeout``."""
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
                self._log = None


class Api:
    def __init__(self, port: int, key: str) -> None:
        self.host, self.port = "127.0.0.1", port
        self.builder = load.RequestBuilder(self.host, port, key)

    def conn(self) -> load.HttpConnection:
        return load.HttpConnection(self.host, self.port)

    def raw(self, method: str, path: str, body: Any = None) -> bytes:
        if method == "GET":
            return self.builder.get(path)
        return self.builder.with_body(method, path, json.dumps(body or {}).encode())

    async def call(
        self,
        conn: load.HttpConnection,
        method: str,
        path: str,
        body: Any = None,
        expect: int = 200,
    ) -> Any:
        raw = self.raw(method, path, body)
        try:
            status, payload = await conn.request(raw)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            # uvicorn closes keep-alive connections idle for 5 s: resend when nothing came.
            if isinstance(e, asyncio.IncompleteReadError) and e.partial:
                raise
            conn.close()
            status, payload = await conn.request(raw)
        if status != expect:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {payload[:300]!r}")
        return json.loads(payload) if payload else None

    async def create_session(self, conn: load.HttpConnection, title: str) -> str:
        doc = await self.call(conn, "POST", "/v1/sessions", {"title": title}, expect=201)
        return str(doc["session"]["id"])

    async def exec(
        self, conn: load.HttpConnection, sid: str, command: list[str] | str, timeout: int = 60
    ) -> dict[str, Any]:
        body = {"command": command, "timeoutSeconds": timeout}
        return dict(await self.call(conn, "POST", f"/v1/sessions/{sid}/exec", body))

    async def sandbox_op(self, conn: load.HttpConnection, sid: str, op: str) -> dict[str, Any]:
        doc = await self.call(conn, "POST", f"/v1/sessions/{sid}/sandbox:{op}")
        return dict(doc["session"])


def sandbox_state(session: dict[str, Any]) -> str | None:
    box = session.get("sandbox") or {}
    return box.get("state")


def exec_problem(label: str, out: dict[str, Any]) -> str | None:
    if out.get("exitCode") == 0 and not out.get("timedOut"):
        return None
    return (
        f"{label}: exit {out.get('exitCode')} signal {out.get('signal')} "
        f"timedOut {out.get('timedOut')}; stderr {str(out.get('stderr'))[-300:]!r}"
    )


async def fresh(conn: load.HttpConnection) -> None:
    """A new connection before a measured request (the old one may have been idle > 5 s)."""
    conn.close()
    await conn.connect()


# --------------------------------------------------------------------------------------
# /proc and disk helpers
# --------------------------------------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of ``pid``, seconds: its own CPU, and that of its
    children it has reaped (an exec's bwrap and command once it ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    own = int(fields[11]) + int(fields[12])
    kids = int(fields[13]) + int(fields[14])
    return own / load._CLK_TCK, kids / load._CLK_TCK


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine (/proc/stat, all cores): busy is
    user + nice + system + irq + softirq; steal is the time a hypervisor gave the
    virtual CPUs to someone else (a VM's noisy neighbours)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    steal = fields[7] if len(fields) > 7 else 0
    return busy / load._CLK_TCK, steal / load._CLK_TCK


def walk_size(root: Path) -> dict[str, Any]:
    """Files, directories (not ``root``), apparent bytes and allocated bytes below root."""
    out: dict[str, Any] = {"exists": root.is_dir(), "files": 0, "dirs": 0, "bytes": 0}
    out["disk_bytes"] = 0
    out["top"] = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if not root.is_dir():
        return out
    for folder, dirs, files in os.walk(root):
        out["dirs"] += len(dirs)
        out["files"] += len(files)
        for name, is_file in [*((d, False) for d in dirs), *((f, True) for f in files)]:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(folder, name))
                out["disk_bytes"] += st.st_blocks * 512
                if is_file:
                    out["bytes"] += st.st_size
    return out


def _create(root: Path, n: int) -> float:
    t = time.perf_counter()
    root.mkdir()
    for i in range(n):
        folder = root / f"d{i // 100}"
        if i % 100 == 0:
            folder.mkdir()
        fd = os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, f"file {i}\n".encode())
        os.close(fd)
    return time.perf_counter() - t


def create_floor(parent: Path, n: int) -> dict[str, float]:
    """What the filesystem costs, no server: plain ``open(O_CREAT|O_EXCL)`` + write +
    close of ``n`` small files, 100 a directory, in a fresh directory under ``parent``;
    their removal; and the same creates again right after it (a restore follows the
    removal of the same number of files by the hibernation before it)."""
    base = Path(tempfile.mkdtemp(prefix="create-floor-", dir=parent))
    try:
        create = _create(base / "a", n)
        t = time.perf_counter()
        shutil.rmtree(base / "a")
        remove = time.perf_counter() - t
        again = _create(base / "b", n)
        return {"create_s": create, "remove_s": remove, "create_after_remove_s": again}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def db_bytes(data_dir: Path) -> dict[str, int]:
    sizes = {}
    for suffix in ("", "-wal"):
        path = data_dir / f"sessiond.db{suffix}"
        sizes[path.name] = path.stat().st_size if path.exists() else 0
    sizes["total"] = sum(sizes.values())
    return sizes


def pct(values: Sequence[float], q: float) -> float | None:
    return load.percentile(sorted(values), q) if values else None


def mib(n: float) -> str:
    return f"{n / 1024**2:,.2f} MiB"


# --------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------


async def part_exec(
    api: Api, pid: int, args: argparse.Namespace, problems: list[str], label: str
) -> dict[str, Any]:
    conn = api.conn()
    try:
        sid = await api.create_session(conn, f"bench sandbox exec ({label})")
        t = time.perf_counter()
        first = await api.exec(conn, sid, ["true"])
        cold_ms = 1e3 * (time.perf_counter() - t)
        if p := exec_problem(f"1 exec {label} first", first):
            problems.append(p)
        for i in range(args.warmup):
            out = await api.exec(conn, sid, ["true"])
            if p := exec_problem(f"1 exec {label} warm-up {i}", out):
                problems.append(p)
        await fresh(conn)
        raw = api.raw("POST", f"/v1/sessions/{sid}/exec", {"command": ["true"]})
        lat: list[float] = []
        durations: list[float] = []
        failed = 0
        own0, kids0 = cpu_split(pid)
        (busy0, steal0), wall0 = machine_cpu_s(), time.perf_counter()
        drv0 = time.process_time()
        for _ in range(args.calls):
            t = time.perf_counter()
            status, payload = await conn.request(raw)
            lat.append(1e3 * (time.perf_counter() - t))
            doc = json.loads(payload) if status == 200 else {}
            if status != 200 or doc.get("exitCode") != 0:
                failed += 1
                if failed <= 3:
                    problems.append(f"1 exec {label}: HTTP {status}: {payload[:200]!r}")
            else:
                durations.append(float(doc.get("durationMs") or 0))
        wall = time.perf_counter() - wall0
        own1, kids1 = cpu_split(pid)
        driver = time.process_time() - drv0
        busy1, steal1 = machine_cpu_s()
        machine, steal = busy1 - busy0, steal1 - steal0
        # hibernate it so that part 3 walks an empty sandboxes dir
        await fresh(conn)
        after = await api.sandbox_op(conn, sid, "hibernate")
    finally:
        conn.close()
    n = max(1, len(lat))
    server, children = own1 - own0, kids1 - kids0
    other = max(0.0, machine - server - children - driver)
    return {
        "session": sid,
        "cold_ms": cold_ms,
        "warmup": args.warmup,
        "calls": len(lat),
        "failed": failed,
        "ms": {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat, default=None)},
        "duration_ms": {
            "p50": pct(durations, 0.5),
            "p99": pct(durations, 0.99),
            "mean": statistics.fmean(durations) if durations else None,
        },
        "wall_s": wall,
        "server_cpu_ms_per_call": 1e3 * server / n,
        "children_cpu_ms_per_call": 1e3 * children / n,
        "other_cpu_pct": 100.0 * other / wall if wall > 0 else 0.0,
        "steal_cpu_pct": 100.0 * steal / wall if wall > 0 else 0.0,
        "state_after": sandbox_state(after),
        "latencies_ms": lat,
    }


async def count_files(api: Api, conn: load.HttpConnection, sid: str) -> tuple[int, float]:
    t = time.perf_counter()
    out = await api.exec(conn, sid, "find . -type f | wc -l", timeout=600)
    took = time.perf_counter() - t
    if out.get("exitCode") != 0:
        raise RuntimeError(f"find: exit {out.get('exitCode')}: {out.get('stderr')!r}")
    return int(str(out["stdout"]).strip()), took


async def part_hibernate(
    api: Api, server: SandboxServer, args: argparse.Namespace, problems: list[str]
) -> dict[str, Any]:
    n = args.files
    # 100 files a directory; dash has no brace expansion, so a counted loop.
    script = (
        f"set -e; i=0; while [ $i -lt {n} ]; do d=d$((i / 100)); "
        '[ $((i % 100)) -ne 0 ] || mkdir "$d"; echo "file $i" > "$d/f$i"; '
        "i=$((i + 1)); done"
    )
    conn = api.conn()
    cycles: list[dict[str, Any]] = []
    try:
        sid = await api.create_session(conn, "bench sandbox hibernate")
        root = server.data_dir / "sandboxes" / sid
        t = time.perf_counter()
        made = await api.exec(conn, sid, script, timeout=600)
        write_s = time.perf_counter() - t
        if p := exec_problem("2 write files", made):
            problems.append(p)
        changed = len(made.get("filesChanged") or [])
        if changed != n:
            problems.append(f"2 write files: filesChanged lists {changed:,}, expected {n:,}")
        floor = await asyncio.to_thread(create_floor, server.tmp, n)
        print(
            f"    floor: {n:,} plain file creates beside the data dir {floor['create_s']:.2f} s, "
            f"their removal {floor['remove_s']:.2f} s, the creates again right after "
            f"{floor['create_after_remove_s']:.2f} s",
            flush=True,
        )
        for c in range(args.cycles):
            await fresh(conn)
            t = time.perf_counter()
            hib = await api.sandbox_op(conn, sid, "hibernate")
            hib_s = time.perf_counter() - t
            gone = not root.exists()
            await fresh(conn)
            t = time.perf_counter()
            res = await api.sandbox_op(conn, sid, "restore")
            res_s = time.perf_counter() - t
            back = (root / "work").is_dir()
            await fresh(conn)
            count, find_s = await count_files(api, conn, sid)
            cycle = {
                "hibernate_s": hib_s,
                "hibernate_state": sandbox_state(hib),
                "dir_gone": gone,
                "restore_s": res_s,
                "restore_state": sandbox_state(res),
                "dir_back": back,
                "files_seen": count,
                "find_exec_s": find_s,
            }
            cycles.append(cycle)
            print(
                f"    cycle {c + 1}: hibernate {hib_s:.2f} s, restore {res_s:.2f} s, "
                f"{count:,} files, find exec {find_s:.2f} s",
                flush=True,
            )
            label = f"2 cycle {c + 1}"
            if cycle["hibernate_state"] != "hibernated" or not gone:
                problems.append(
                    f"{label}: after hibernate state {cycle['hibernate_state']!r}, "
                    f"directory {'gone' if gone else 'still there'}"
                )
            if cycle["restore_state"] != "active" or not back:
                problems.append(
                    f"{label}: after restore state {cycle['restore_state']!r}, "
                    f"directory {'back' if back else 'missing'}"
                )
            if count != n:
                problems.append(f"{label}: find saw {count:,} files after restore, expected {n:,}")
        await fresh(conn)
        await api.sandbox_op(conn, sid, "hibernate")
    finally:
        conn.close()
    hib_all = [c["hibernate_s"] for c in cycles]
    res_all = [c["restore_s"] for c in cycles]
    return {
        "session": sid,
        "files": n,
        "write_exec_s": write_s,
        "write_files_changed": changed,
        "floor": floor,
        "cycles": cycles,
        "hibernate_s": {
            "first": hib_all[0] if hib_all else None,
            "max": max(hib_all, default=None),
        },
        "restore_s": {"first": res_all[0] if res_all else None, "max": max(res_all, default=None)},
        "all_ok": all(c["files_seen"] == n and c["dir_gone"] and c["dir_back"] for c in cycles),
    }


async def part_disk(
    api: Api, server: SandboxServer, args: argparse.Namespace, problems: list[str]
) -> dict[str, Any]:
    n, k, size = args.sessions, args.session_files, args.file_bytes
    script = f"set -e; for i in $(seq 1 {k}); do head -c {size} /dev/urandom > f$i.bin; done"
    base = server.data_dir / "sandboxes"
    before = walk_size(base)
    db_before = db_bytes(server.data_dir)
    conn = api.conn()
    sids: list[str] = []
    exec_ms: list[float] = []
    hib_ms: list[float] = []
    t0 = time.perf_counter()
    try:
        await fresh(conn)
        for i in range(n):
            sid = await api.create_session(conn, f"bench sandbox disk {i}")
            sids.append(sid)
            t = time.perf_counter()
            out = await api.exec(conn, sid, script)
            exec_ms.append(1e3 * (time.perf_counter() - t))
            if p := exec_problem(f"3 session {i} exec", out):
                problems.append(p)
            elif len(out.get("filesChanged") or []) != k:
                problems.append(
                    f"3 session {i}: filesChanged lists {len(out.get('filesChanged') or [])}"
                )
            t = time.perf_counter()
            hib = await api.sandbox_op(conn, sid, "hibernate")
            hib_ms.append(1e3 * (time.perf_counter() - t))
            if sandbox_state(hib) != "hibernated":
                problems.append(f"3 session {i}: state {sandbox_state(hib)!r} after hibernate")
    finally:
        conn.close()
    wall = time.perf_counter() - t0
    await asyncio.sleep(0.5)  # a moment for anything queued behind the last answer
    after = walk_size(base)
    db_after = db_bytes(server.data_dir)
    left = [s for s in sids if (base / s).exists()]
    if left:
        problems.append(f"3: {len(left)} of the {n} hibernated sessions still have a directory")
    growth = db_after["total"] - db_before["total"]
    return {
        "sessions": n,
        "files_per_session": k,
        "file_bytes": size,
        "payload_bytes": n * k * size,
        "wall_s": wall,
        "exec_ms": {"p50": pct(exec_ms, 0.5), "p99": pct(exec_ms, 0.99)},
        "hibernate_ms": {"p50": pct(hib_ms, 0.5), "p99": pct(hib_ms, 0.99)},
        "sandboxes_before": before,
        "sandboxes_after": after,
        "dirs_left": left,
        "db_before": db_before,
        "db_after": db_after,
        "db_growth_bytes": growth,
        "db_growth_per_session_bytes": growth / n if n else None,
    }


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def f_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def table(runs: list[dict[str, Any]]) -> list[agents.Row]:
    rows: list[agents.Row] = []
    Row, verdict = agents.Row, agents.verdict
    for run in runs:
        e = run.get("exec")
        if not e:
            continue
        mode = run["mode"]
        applies = mode == "bwrap"
        p99 = e["ms"]["p99"]
        rows.append(
            Row(
                f"1 exec {mode}",
                f'POST /exec ["true"] p50 / p99 / max ({e["calls"]} warm, sequential)',
                f"{f_ms(e['ms']['p50'])} / {f_ms(p99)} / {f_ms(e['ms']['max'])} ms",
                f"p99 < {EXEC_P99_TARGET_MS:g} ms" if applies else "—",
                verdict(p99 is not None and p99 < EXEC_P99_TARGET_MS and not e["failed"])
                if applies
                else "—",
            )
        )
        d = e["duration_ms"]
        rows.append(
            Row(
                f"1 exec {mode}",
                "  durationMs (the command, as the server reports it) p50 / p99",
                f"{f_ms(d['p50'])} / {f_ms(d['p99'])} ms",
            )
        )
        rows.append(
            Row(
                f"1 exec {mode}",
                "  server CPU / reaped children's CPU per call",
                f"{e['server_cpu_ms_per_call']:.1f} / {e['children_cpu_ms_per_call']:.1f} ms",
            )
        )
        rows.append(
            Row(
                f"1 exec {mode}",
                "  first exec of the session (writes the sandbox)",
                f"{e['cold_ms']:.1f} ms",
            )
        )
    for run in runs:
        h = run.get("hibernate")
        if h:
            part = f"2 hibernate {run['mode']}"
            rows.append(
                Row(
                    part,
                    f"exec writing {h['files']:,} files (incl. the sync into the tree)",
                    f"{h['write_exec_s']:.2f} s",
                )
            )
            hs, rs = h["hibernate_s"], h["restore_s"]
            many = len(h["cycles"]) > 1
            rows.append(
                Row(
                    part,
                    f"POST sandbox:hibernate, {h['files']:,} files"
                    + (f", 1st / max of {len(h['cycles'])}" if many else ""),
                    f"{hs['first']:.2f}" + (f" / {hs['max']:.2f}" if many else "") + " s",
                    f"< {HIBERNATE_TARGET_S:g} s",
                    verdict(hs["max"] is not None and hs["max"] < HIBERNATE_TARGET_S),
                )
            )
            rows.append(
                Row(
                    part,
                    f"POST sandbox:restore, {h['files']:,} files"
                    + (f", 1st / max of {len(h['cycles'])}" if many else ""),
                    f"{rs['first']:.2f}" + (f" / {rs['max']:.2f}" if many else "") + " s",
                    f"< {RESTORE_TARGET_S:g} s",
                    verdict(rs["max"] is not None and rs["max"] < RESTORE_TARGET_S),
                )
            )
            fl = h["floor"]
            rows.append(
                Row(
                    part,
                    f"  floor, no server: {h['files']:,} plain creates / rmtree / creates again"
                    " beside the data dir",
                    f"{fl['create_s']:.2f} / {fl['remove_s']:.2f} / "
                    f"{fl['create_after_remove_s']:.2f} s",
                )
            )
            seen = sorted({c["files_seen"] for c in h["cycles"]})
            finds = [c["find_exec_s"] for c in h["cycles"]]
            rows.append(
                Row(
                    part,
                    "files seen by `find . -type f` after each restore",
                    " / ".join(f"{s:,}" for s in seen),
                    f"= {h['files']:,}",
                    "ok" if h["all_ok"] else "FAIL",
                )
            )
            rows.append(
                Row(
                    part,
                    "  that exec (find + the sync's scan), max",
                    f"{max(finds):.2f} s" if finds else "—",
                )
            )
        dk = run.get("disk")
        if dk:
            part = f"3 disk {run['mode']}"
            a = dk["sandboxes_after"]
            left = a["files"] + a["dirs"]
            rows.append(
                Row(
                    part,
                    f"<data-dir>/sandboxes after {dk['sessions']} hibernations: "
                    "bytes (files / dirs)",
                    f"{a['bytes']:,} B ({a['files']} / {a['dirs']})",
                    "0 B, nothing left",
                    verdict(left == 0 and not dk["dirs_left"]),
                )
            )
            rows.append(
                Row(
                    part,
                    f"db + wal growth over {dk['sessions']} sessions "
                    f"({dk['files_per_session']} x {dk['file_bytes']:,} B random each)",
                    f"{mib(dk['db_growth_bytes'])} ({dk['db_growth_per_session_bytes'] / 1024:,.1f}"
                    f" KiB/session; payload {mib(dk['payload_bytes'])})",
                )
            )
            rows.append(
                Row(
                    part,
                    "  per session: exec p50 / hibernate p50; total wall",
                    f"{f_ms(dk['exec_ms']['p50'])} / {f_ms(dk['hibernate_ms']['p50'])} ms; "
                    f"{dk['wall_s']:.1f} s",
                )
            )
    return rows


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--only", default=",".join(PARTS), help="parts to run")
    p.add_argument(
        "--modes",
        default="auto,none",
        help="SESSIOND_SANDBOX of each server, in order; exec runs on every one, "
        "hibernate and disk on the first",
    )
    p.add_argument("--calls", type=int, default=200, help="measured exec calls (part 1)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up exec calls (part 1)")
    p.add_argument("--files", type=int, default=10_000, help="files of the part 2 session")
    p.add_argument("--cycles", type=int, default=3, help="hibernate/restore cycles (part 2)")
    p.add_argument("--sessions", type=int, default=100, help="sessions of part 3")
    p.add_argument("--session-files", type=int, default=20, help="files per part 3 session")
    p.add_argument("--file-bytes", type=int, default=1024, help="size of a part 3 file")
    p.add_argument("--json", dest="json_path", default=None, help="also write raw figures here")
    p.add_argument("--sessiond", default=None, help="sessiond executable (default: the venv's)")
    p.add_argument("--server-arg", action="append", default=[], help="extra `serve` argument")
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument(
        "--tmp-dir",
        default=None,
        help="parent of the servers' temp data dirs (default: the system temp dir)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the temp data dirs and logs")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a target is missed")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    args.mode_list = [x.strip() for x in args.modes.split(",") if x.strip()]
    bad = set(args.mode_list) - set(MODES)
    if bad or not args.mode_list:
        p.error(f"--modes takes {', '.join(MODES)}")
    if min(args.calls, args.files, args.cycles, args.sessions, args.session_files) < 1:
        p.error("--calls, --files, --cycles, --sessions and --session-files must be positive")
    return args


async def run_server(
    mode: str, first: bool, executable: str, extra: list[str], args: argparse.Namespace
) -> tuple[dict[str, Any], list[str], list[str]]:
    """One server: its parts, its RSS, its log's findings."""
    server = SandboxServer(executable, extra, mode, args.tmp_dir)
    run: dict[str, Any] = {"requested": mode}
    problems: list[str] = []
    findings: list[str] = []
    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        print(
            f"started sessiond pid {pid} (SESSIOND_SANDBOX={mode}) on {server.url}, "
            f"data {server.data_dir}",
            flush=True,
        )
        key = await server.wait_ready(args.startup_timeout)
        api = Api(server.port, key)
        conn = api.conn()
        try:
            doc = await api.call(conn, "GET", "/v1/agents")
        finally:
            conn.close()
        box = doc.get("sandbox") or {}
        run["mode"] = str(box.get("mode"))
        run["sandbox"] = box
        print(f"  GET /v1/agents sandbox: {json.dumps(box)}", flush=True)
        if mode == "auto" and run["mode"] != "bwrap":
            problems.append(
                f"SESSIOND_SANDBOX=auto runs in mode {run['mode']!r}, not bwrap "
                f"({box.get('reason')!r}): no row measures bwrap"
            )
        jobs: list[str] = []
        if "exec" in args.parts:
            jobs.append("exec")
        if first:
            jobs += [p for p in ("hibernate", "disk") if p in args.parts]
        run["steal_pct"] = {}
        for name in jobs:
            t = time.perf_counter()
            steal0 = machine_cpu_s()[1]
            try:
                if name == "exec":
                    run["exec"] = await part_exec(api, pid, args, problems, mode)
                elif name == "hibernate":
                    run["hibernate"] = await part_hibernate(api, server, args, problems)
                else:
                    run["disk"] = await part_disk(api, server, args, problems)
            except (RuntimeError, TimeoutError, OSError, EOFError, ValueError, load.HttpError) as e:
                problems.append(f"part {name} ({mode}) failed: {type(e).__name__}: {e}")
            took = time.perf_counter() - t
            steal = 100.0 * (machine_cpu_s()[1] - steal0) / took if took > 0 else 0.0
            run["steal_pct"][name] = steal
            print(f"  part {name}: {took:.1f} s (cpu steal {steal:.0f}%)", flush=True)
            if server.proc.poll() is not None:
                raise RuntimeError("sessiond died during the run\n" + server.log_tail())
        mem = load.read_memory_kb(pid)
        run["server_rss_mb"] = mem.get("VmRSS", 0) / 1024
        run["server_peak_rss_mb"] = mem.get("VmHWM", 0) / 1024
        run["processes"] = len(load.process_tree(pid))
    finally:
        run["server_exit_code"] = server.stop_process() if server.proc is not None else None
        findings = agents.log_findings(server.log_path)
        if args.keep_data:
            print(f"data dir and server log kept in {server.tmp}")
        else:
            shutil.rmtree(server.tmp, ignore_errors=True)
    return run, problems, findings


async def bench(args: argparse.Namespace) -> int:
    me = asyncio.current_task()
    if me is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    executable = load.find_sessiond(args.sessiond)
    extra = list(args.server_arg)
    if "--no-access-log" not in extra and agents.has_no_access_log_flag(executable):
        extra.append("--no-access-log")
    meta: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "loop": type(asyncio.get_running_loop()).__module__,
        "cpus": os.cpu_count(),
        "uid": os.getuid(),
        "cmd": [executable, "serve", *extra],
        "modes": args.mode_list,
        "tmp_dir": args.tmp_dir or tempfile.gettempdir(),
    }
    runs: list[dict[str, Any]] = []
    problems: list[str] = []
    findings: list[str] = []
    rc = 0
    t_start = time.perf_counter()
    for i, mode in enumerate(args.mode_list):
        run, probs, finds = await run_server(mode, i == 0, executable, extra, args)
        runs.append(run)
        problems += probs
        findings += [f"[{mode}] {ln}" for ln in finds]
    meta["seconds"] = time.perf_counter() - t_start

    rows = table(runs)
    print()
    other = [f"{r['mode']} exec {r['exec']['other_cpu_pct']:.0f}%" for r in runs if r.get("exec")]
    steals = [
        f"{r['mode']} {name} {v:.0f}%" for r in runs for name, v in r.get("steal_pct", {}).items()
    ]
    agents.print_rows(
        rows,
        f"sessiond sandbox bench — SQLite, {'root' if os.getuid() == 0 else 'user'}, "
        f"data under {meta['tmp_dir']}, {meta['seconds']:.0f} s"
        + (f", other cpu: {', '.join(other)}" if other else "")
        + (f"; cpu steal: {', '.join(steals)}" if steals else ""),
    )
    for r in runs:
        if "server_rss_mb" in r:
            print(
                f"server RSS at the end ({r['requested']} → {r['mode']}): "
                f"{r['server_rss_mb']:.1f} MB (peak {r['server_peak_rss_mb']:.1f} MB)"
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
        doc = {"meta": meta, "runs": runs, "problems": problems, "log": findings[:200]}
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
