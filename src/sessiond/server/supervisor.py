"""The supervisor of ``sessiond serve --workers N`` (docs/design/workers.md).

It holds the port (a socket bound with SO_REUSEPORT that never listens, so ``--port 0``
resolves once for every worker), starts N worker processes, restarts one that dies
(after a back-off that grows while it keeps dying young), and on SIGTERM or SIGINT
stops them all gracefully (SIGTERM, then SIGKILL after ``STOP_GRACE``). Workers die with
it even when it is killed (``PR_SET_PDEATHSIG``). It runs no app and opens no database.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from sessiond.server.listen import reuseport_socket
from sessiond.settings import Settings

log = logging.getLogger("sessiond.supervisor")

STOP_GRACE = 15.0  # seconds a worker gets to finish its requests and lifespan
YOUNG = 10.0  # a worker that dies sooner than this after its start "died young"
GIVE_UP = 5  # this many young deaths in a row of one worker: stop everything, exit 1
BACKOFF_MAX = 30.0


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    young_deaths: int = 0
    restart_at: float = 0.0


class Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.workers = [_Worker(k) for k in range(count)]
        self.stopping = False
        self.failed = False
        self._holder: socket.socket | None = None

    def bind(self) -> int:
        """Hold the port (resolving port 0); the port."""
        if self._holder is None:
            self._holder = reuseport_socket(self.settings.host, self.settings.port, listen=False)
            port = int(self._holder.getsockname()[1])
            self.settings = self.settings.model_copy(update={"port": port})
        return self.settings.port

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (1 when workers kept dying)."""
        self.bind()
        assert self._holder is not None
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for worker in self.workers:
                self._start(worker)
            while not self.stopping:
                self._watch()
                time.sleep(0.1)
        finally:
            self._stop_all()
            self._holder.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _start(self, worker: _Worker) -> None:
        settings = self.settings.model_copy(update={"worker": worker.index})
        proc = subprocess.Popen(
            [sys.executable, "-m", "sessiond.server.worker", str(os.getpid())],
            stdin=subprocess.PIPE,
            # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
            # stops the workers once, gracefully (a second signal would rush uvicorn).
            process_group=0,
        )
        assert proc.stdin is not None
        proc.stdin.write(settings.model_dump_json().encode())
        proc.stdin.close()
        worker.proc, worker.started = proc, time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, proc.pid)

    def _watch(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is not None:
                code = proc.poll()
                if code is None:
                    continue
                worker.proc = None
                worker.young_deaths = worker.young_deaths + 1 if now - worker.started < YOUNG else 0
                if worker.young_deaths >= GIVE_UP:
                    log.error(
                        "worker %d died %d times in a row right after its start (exit %s); "
                        "stopping",
                        worker.index,
                        worker.young_deaths,
                        code,
                    )
                    self.failed = self.stopping = True
                    return
                wait = min(BACKOFF_MAX, 0.5 * 2**worker.young_deaths)
                worker.restart_at = now + wait
                log.warning("worker %d exited (%s); restarting in %.1f s", worker.index, code, wait)
            if worker.proc is None and now >= worker.restart_at:
                self._start(worker)

    def _stop_all(self) -> None:
        running = [w.proc for w in self.workers if w.proc is not None]
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %.0f s; killed", proc.pid, STOP_GRACE)
                proc.kill()
                proc.wait()
