"""Webhook fan-out bench for sessiond: N events to W webhooks on a loopback receiver.

Starts ``sessiond serve`` (SQLite, defaults, ``--no-access-log``) on a fresh temporary
data dir and a free loopback port, and a receiver (``http.server``, threaded, answers 200
at once, HTTP/1.1 keep-alive, in a process of its own, so that it takes no CPU from the
driver's timing) on another. Then, on one keep-alive connection, sequentially:

1. **baseline**: one session, ``--events`` message appends with no webhook: the client's
   round trip p50 / p99 per append (each append writes one ``message.created`` event).
2. **with webhooks**: ``--webhooks`` webhooks subscribed to ``message.`` are registered,
   then another ``--events`` appends, timed the same way; the difference from the
   baseline is the latency webhooks add to the write path (target: none measurable —
   delivery reads the event store after commit).
3. **delivery**: the receiver must get every (webhook, event) pair of part 2; the bench
   waits for all of them and reports the deliveries per second from the first append of
   part 2 to the last delivery, the lag from the last append to the last delivery, the
   duplicates (a pair received twice), and checks the order per webhook (event ids
   ascending) and that the delivery log says ``succeeded`` for every one.

Run on demand, never by the test suite::

    .venv/bin/python bench/webhooks.py
    .venv/bin/python bench/webhooks.py --events 1000 --webhooks 10 --json /tmp/webhooks.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import load  # noqa: E402  (server management)


class _Handler(BaseHTTPRequestHandler):
    """The receiver: records the event id of each POST per URL path (one path per
    webhook), answers 200 at once, keeps connections alive; ``GET /stats`` returns what
    it recorded."""

    protocol_version = "HTTP/1.1"
    got: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()
    last_at = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        json.loads(body)
        with _Handler.lock:
            _Handler.got[self.path].append(int(self.headers["Sessiond-Event-Id"]))
            _Handler.last_at = time.time()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with _Handler.lock:
            payload = json.dumps({"got": _Handler.got, "lastAt": _Handler.last_at}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve_receiver(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.serve_forever()


class Receiver:
    """The receiver in a process of its own (so that it takes no CPU from the driver)."""

    def __init__(self) -> None:
        self.port = load.free_loopback_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--receiver", str(self.port)], stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.stats()
                return
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "receiver did not start"
                time.sleep(0.05)

    def stats(self) -> tuple[dict[str, list[int]], float]:
        data = httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json()
        return data["got"], data["lastAt"]

    def total(self) -> int:
        return sum(len(v) for v in self.stats()[0].values())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def appends(c: httpx.Client, sid: str, n: int, tag: str) -> tuple[list[float], float]:
    times = []
    first = time.time()
    for i in range(n):
        body = {"role": "user", "content": f"{tag} {i}"}
        t = time.perf_counter()
        r = c.post(f"/v1/sessions/{sid}/messages", json=body)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 201, r.text
    return times, first


async def run(args: argparse.Namespace) -> int:
    server = load.ManagedServer(load.find_sessiond(None), ["--no-access-log"], args.keep_data)
    rec = Receiver()
    problems: list[str] = []
    try:
        server.start()
        key = await server.wait_ready(60)
        c = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        sid = c.post("/v1/sessions", json={"title": "bench"}).json()["session"]["id"]
        appends(c, sid, 50, "warm")
        base, _ = appends(c, sid, args.events, "base")
        hooks = []
        for i in range(args.webhooks):
            url = f"http://127.0.0.1:{rec.port}/hook{i}"
            r = c.post("/v1/webhooks", json={"url": url, "types": ["message."]})
            assert r.status_code == 201, r.text
            hooks.append((f"/hook{i}", r.json()["webhook"]["id"]))
        with_hooks, first = appends(c, sid, args.events, "hooked")
        last_write = time.time()
        want = args.events * args.webhooks
        deadline = time.monotonic() + args.timeout
        while rec.total() < want and time.monotonic() < deadline:
            time.sleep(0.05)
        received, done = rec.stats()
        got = sum(len(v) for v in received.values())
        if got < want:
            problems.append(f"only {got} of {want} deliveries arrived in {args.timeout:g} s")
        dups = 0
        for path, _ in hooks:
            ids = received.get(path, [])
            dups += len(ids) - len(set(ids))
            if ids != sorted(ids):
                problems.append(f"{path}: events out of id order")
        succeeded = 0
        for _, webhook_id in hooks:
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 200, "status": "succeeded"}
                if cursor:
                    params["cursor"] = cursor
                page = c.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params).json()
                succeeded += len(page["deliveries"])
                cursor = page["nextCursor"]
                if cursor is None:
                    break
        if succeeded != want:
            problems.append(f"the delivery log says {succeeded} succeeded, expected {want}")
        rate = got / (done - first) if done > first else 0.0
        figures = {
            "events": args.events,
            "webhooks": args.webhooks,
            "append_ms_no_webhooks": {"p50": pct(base, 0.5), "p99": pct(base, 0.99)},
            "append_ms_with_webhooks": {"p50": pct(with_hooks, 0.5), "p99": pct(with_hooks, 0.99)},
            "deliveries": got,
            "duplicates": dups,
            "deliveries_per_s": rate,
            "lag_after_last_write_s": max(0.0, done - last_write),
            "mean_append_ms": {"no": statistics.mean(base), "with": statistics.mean(with_hooks)},
        }
        c.close()
    finally:
        server.stop()
        rec.stop()
    b, w = figures["append_ms_no_webhooks"], figures["append_ms_with_webhooks"]
    print(f"sessiond webhook bench — SQLite, {args.events} events x {args.webhooks} webhooks")
    print("| figure | value | target | verdict |")
    print("|---|---|---|---|")
    print(f"| append p50 / p99, no webhook | {b['p50']:.2f} / {b['p99']:.2f} ms | — | — |")
    added = w["p50"] - b["p50"]
    print(
        f"| append p50 / p99, {args.webhooks} webhooks delivering | {w['p50']:.2f} / "
        f"{w['p99']:.2f} ms | p50 within noise of the baseline | "
        f"{'ok' if added < max(0.5, 0.1 * b['p50']) else 'MISS'} (+{added:.2f} ms) |"
    )
    print(
        f"| deliveries received / duplicates | {got:,} / {dups} | {want:,} / 0 | "
        f"{'ok' if got >= want and dups == 0 else 'MISS'} |"
    )
    print(f"| deliveries per second (first append → last delivery) | {rate:,.0f}/s | — | — |")
    lag = figures["lag_after_last_write_s"]
    print(f"| lag, last append → last delivery | {lag:.2f} s | — | — |")
    for p in problems:
        print(f"PROBLEM: {p}")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "problems": problems}, indent=2))
    return 1 if problems else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--webhooks", type=int, default=10)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--json")
    p.add_argument("--keep-data", action="store_true")
    p.add_argument("--receiver", type=int, help=argparse.SUPPRESS)  # internal: the receiver
    args = p.parse_args()
    if args.receiver:
        serve_receiver(args.receiver)
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
