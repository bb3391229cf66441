"""SSE fan-out: N subscribers on one session's stream, publish → deliver latency.

Starts ``sessiond serve`` (fresh data dir, free loopback port; ``--workers`` passed on),
opens ``--subscribers`` streams on ``GET /v1/sessions/{id}/events/stream`` (raw
asyncio sockets, one per subscriber), then publishes ``--events`` custom events
(``POST /v1/sessions/{id}/events``) ``--interval`` seconds apart on a keep-alive
connection. Each delivery's latency is its arrival time minus the moment its POST was
sent (one clock: the same process). Prints p50/p90/p99/max over every (subscriber,
event) pair, deliveries lost (expected - received) and duplicates, next to the target
(p99 < 100 ms at 1,000 subscribers, 0 lost).

The subscribers' client runs on the same machine as the server (2 cores here): its
parsing is part of the figure, as it would be for any client on the box. Run on demand::

    .venv/bin/python bench/sse.py                          # 100 and 1,000 subscribers
    .venv/bin/python bench/sse.py --subscribers 1000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import load  # (the sessiond server, the keep-alive client, /proc helpers)

TARGET_P99_MS = 100.0
N_FIELD = re.compile(rb'"n":(\d+)')


@dataclass
class Subscriber:
    arrivals: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0


async def subscribe(port: int, key: str, session_id: str, sub: Subscriber, ready: asyncio.Event,
                    opened: list[int], total: int) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(
        f"GET /v1/sessions/{session_id}/events/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"stream refused: {head[:200]!r}")
    opened[0] += 1
    if opened[0] == total:
        ready.set()
    try:
        while True:
            chunk = await reader.readuntil(b"\r\n\r\n")  # one SSE event (or ping)
            at = time.monotonic()
            if b"custom.bench" not in chunk:
                continue
            found = N_FIELD.search(chunk)
            if found is None:
                continue
            n = int(found.group(1))
            if n in sub.arrivals:
                sub.duplicates += 1
            else:
                sub.arrivals[n] = at
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, int(len(values) * q + 0.5) - 1))]


async def run(args: argparse.Namespace, count: int) -> dict[str, float]:
    extra = [*args.server_arg, *(["--workers", str(args.workers)] if args.workers else [])]
    server = load.ManagedServer(
        load.find_sessiond(args.sessiond), ["--no-access-log", *extra], False
    )
    server.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        key = await server.wait_ready(60)
        builder = load.RequestBuilder("127.0.0.1", server.port, key)
        conn = load.HttpConnection("127.0.0.1", server.port)
        status, body = await conn.request(builder.with_body("POST", "/v1/sessions", b"{}"))
        assert status == 201, body
        session_id = json.loads(body)["session"]["id"]
        conn.close()  # idle while the streams open (past uvicorn's keep-alive): reconnect
        subs = [Subscriber() for _ in range(count)]
        ready, opened = asyncio.Event(), [0]
        for i in range(0, count, 50):  # open in waves: the accept queue stays short
            tasks += [
                asyncio.create_task(
                    subscribe(server.port, key, session_id, s, ready, opened, count)
                )
                for s in subs[i : i + 50]
            ]
            await asyncio.sleep(0.05)
        await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(1.0)  # every stream past its catch-up, waiting live
        sent: dict[int, float] = {}
        path = f"/v1/sessions/{session_id}/events"
        for n in range(args.events):
            raw = builder.with_body(
                "POST", path, json.dumps({"type": "custom.bench", "data": {"n": n}}).encode()
            )
            sent[n] = time.monotonic()
            status, body = await conn.request(raw)
            assert status == 201, body
            await asyncio.sleep(args.interval)
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline and sum(len(s.arrivals) for s in subs) < count * args.events
        ):
            await asyncio.sleep(0.1)
        conn.close()
        lags = sorted((at - sent[n]) * 1000 for s in subs for n, at in s.arrivals.items())
        received = sum(len(s.arrivals) for s in subs)
        return {
            "subscribers": count,
            "events": args.events,
            "p50_ms": pct(lags, 0.50),
            "p90_ms": pct(lags, 0.90),
            "p99_ms": pct(lags, 0.99),
            "max_ms": lags[-1],
            "lost": count * args.events - received,
            "duplicates": sum(s.duplicates for s in subs),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()


async def main(args: argparse.Namespace) -> int:
    rows = [await run(args, count) for count in args.subscribers]
    workers = args.workers or "default"
    print(f"\nSSE fan-out (one session, {args.events} events {args.interval * 1000:.0f} ms apart, "
          f"workers: {workers})")  # fmt: skip
    print(f"{'subscribers':>11} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'lost':>6} {'dups':>5}  verdict")  # fmt: skip
    missed = False
    for r in rows:
        ok = r["lost"] == 0 and r["duplicates"] == 0
        if r["subscribers"] >= 1000:
            ok = ok and r["p99_ms"] < TARGET_P99_MS
        missed |= not ok
        verdict = ("ok" if ok else "MISS") + (
            " (target p99 < 100 ms)" if r["subscribers"] >= 1000 else ""
        )
        print(f"{r['subscribers']:>11} {r['p50_ms']:>8.1f} {r['p90_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['max_ms']:>8.1f} {r['lost']:>6} {r['duplicates']:>5}  {verdict}")  # fmt: skip
    return 3 if missed and args.fail_on_miss else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--subscribers", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000]
    )
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--interval", type=float, default=0.1, help="seconds between events")
    p.add_argument("--workers", type=int, default=None, help="passed to `sessiond serve --workers`")
    p.add_argument("--sessiond", default=None, help="the sessiond executable")
    p.add_argument(
        "--server-arg", action="append", default=[], help="extra `sessiond serve` argument"
    )
    p.add_argument("--fail-on-miss", action="store_true")
    return p.parse_args()


if __name__ == "__main__":
    try:
        import uvloop

        sys.exit(uvloop.run(main(parse_args())))
    except ImportError:
        sys.exit(asyncio.run(main(parse_args())))
