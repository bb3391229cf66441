"""Export / import benchmark for sessiond: one big session out and back in, over HTTP.

Starts a real ``sessiond serve`` (SQLite in a temporary data directory, or
``--database-url``), seeds one session with ``--files`` files (one ``POST /v1/sessions``
with ``source.files``, 10,000 at most) and ``--messages`` messages (appended over HTTP by
a few connections), takes a checkpoint and a commit, then measures, each next to its
target:

1. ``GET .../export`` — time to the last byte, and the archive's size (with the raw size
   of the files and of the manifest for comparison);
2. ``POST /v1/sessions:import`` of that file into the same account (the git objects are
   already there: only rows are new), then into a second account (every object new);
3. the server's peak RSS while doing so (from /proc).

Run on demand, never by the test suite::

    .venv/bin/python bench/export.py                          # 10,000 files + messages
    .venv/bin/python bench/export.py --files 1000 --messages 1000

See the "Export and import" section of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

EXPORT_MAX_S = 5.0  # export of 10,000 files + 10,000 messages, to the last byte
IMPORT_MAX_S = 10.0  # import of the same, into an account that has none of its objects
SIZE_MAX_RATIO = 1.5  # archive size vs raw file bytes + manifest gzipped alone


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _file(i: int, rng: random.Random) -> str:
    words = " ".join(rng.choice(("alpha", "beta", "gamma", "delta", "eps")) for _ in range(40))
    return f"# file {i}\ndef f{i}():\n    return {i}  # {words}\n"


def start(data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    exe = Path(sys.executable).parent / "sessiond"
    cmd = [str(exe), "serve", "--port", str(port), "--data-dir", str(data_dir), "--no-access-log"]
    if database_url:
        cmd += ["--database-url", database_url]
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit((data_dir / "server.log").read_text())
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.1)


def seed(c: httpx.Client, url: str, key: str, files: int, messages: int) -> tuple[str, int]:
    rng = random.Random(7)
    contents = {f"src/pkg{i % 100}/mod{i}.py": _file(i, rng) for i in range(files)}
    raw = sum(len(v.encode()) for v in contents.values())
    r = c.post("/v1/sessions", json={"title": "bench", "source": {"files": contents}})
    r.raise_for_status()
    sid = r.json()["session"]["id"]

    def append(n: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as one:
            for i in range(n):
                role = "user" if i % 2 == 0 else "assistant"
                text = f"message {i}: " + " ".join(
                    rng.choice(("a", "bb", "ccc")) for _ in range(60)
                )
                one.post(f"/v1/sessions/{sid}/messages", json={"role": role, "content": text})

    per = messages // 4
    with cf.ThreadPoolExecutor(4) as pool:
        list(pool.map(append, [per, per, per, messages - 3 * per]))
    c.post(f"/v1/sessions/{sid}/checkpoints", json={"label": "bench"}).raise_for_status()
    c.put(f"/v1/sessions/{sid}/files/src/extra.py", content=b"x = 1\n").raise_for_status()
    c.post(f"/v1/sessions/{sid}/commit", json={"message": "bench"}).raise_for_status()
    return sid, raw


def verdict(ok: bool) -> str:
    return "ok" if ok else "**MISS**"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = p.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="sessiond-bench-export-"))
    proc, url = start(data_dir, args.database_url)
    try:
        key = (data_dir / "admin.key").read_text().strip()
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        t0 = time.perf_counter()
        sid, raw = seed(c, url, key, args.files, args.messages)
        seeded = time.perf_counter() - t0

        t0 = time.perf_counter()
        r = c.get(f"/v1/sessions/{sid}/export")
        r.raise_for_status()
        data = r.content
        export_s = time.perf_counter() - t0
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            manifest_bytes = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
            pack_bytes = tar.getmember("objects.pack").size
        manifest = json.loads(manifest_bytes)
        manifest_gz = len(gzip.compress(manifest_bytes, 1))

        t0 = time.perf_counter()
        r = c.post("/v1/sessions:import", content=data)
        same_s = time.perf_counter() - t0
        assert r.status_code == 201, r.text
        # A second account: none of the objects are there yet.
        created = subprocess.run(
            [str(Path(sys.executable).parent / "sessiond"), "accounts", "create", "bench2",
             "--data-dir", str(data_dir)] + (["--database-url", args.database_url]
                                             if args.database_url else []),
            capture_output=True, check=True,
        )  # fmt: skip
        del created
        key2 = subprocess.run(
            [str(Path(sys.executable).parent / "sessiond"), "keys", "create", "--account",
             "bench2", "--data-dir", str(data_dir)] + (["--database-url", args.database_url]
                                                       if args.database_url else []),
            capture_output=True, check=True, text=True,
        ).stdout.strip()  # fmt: skip
        t0 = time.perf_counter()
        r = httpx.post(
            f"{url}/v1/sessions:import",
            content=data,
            headers={"Authorization": f"Bearer {key2}"},
            timeout=600,
        )
        fresh_s = time.perf_counter() - t0
        assert r.status_code == 201, r.text
        new = r.json()["session"]
        assert new["messageCount"] == args.messages, new["messageCount"]
        rss = _rss_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    backend = "PostgreSQL" if args.database_url else "SQLite"
    scale = args.files == 10_000 and args.messages == 10_000
    ratio = len(data) / (raw + manifest_gz)
    rows = [
        ("seeding (files in one create, messages over HTTP)", f"{seeded:.1f} s", "—", ""),
        ("export, to the last byte", f"{export_s:.2f} s", f"< {EXPORT_MAX_S:.0f} s",
         verdict(export_s < EXPORT_MAX_S) if scale else "(scaled down)"),
        ("archive size", f"{len(data) / 1e6:.2f} MB", "—", ""),
        ("  raw file bytes / objects / pack member", f"{raw / 1e6:.2f} MB / "
         f"{len(manifest['objects'])} / {pack_bytes / 1e6:.2f} MB", "—", ""),
        ("  manifest (JSON / gzipped alone)", f"{len(manifest_bytes) / 1e6:.2f} MB / "
         f"{manifest_gz / 1e6:.2f} MB", "—", ""),
        ("  archive / (raw files + gzipped manifest)", f"{ratio:.2f}x",
         f"< {SIZE_MAX_RATIO}x", verdict(ratio < SIZE_MAX_RATIO)),
        ("import, same account (objects present)", f"{same_s:.2f} s", "—", ""),
        ("import, another account (every object new)", f"{fresh_s:.2f} s",
         f"< {IMPORT_MAX_S:.0f} s", verdict(fresh_s < IMPORT_MAX_S) if scale else "(scaled down)"),
        ("server peak RSS", f"{rss / 1024:.0f} MiB", "—", ""),
    ]  # fmt: skip
    print(f"\nExport / import, {args.files} files + {args.messages} messages, {backend}, "
          f"{os.cpu_count()} cores\n")  # fmt: skip
    print("| what | measured | target | verdict |\n|---|---|---|---|")
    for name, value, target, ok in rows:
        print(f"| {name} | {value} | {target} | {ok} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
