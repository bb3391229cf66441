"""The clock of a test's app (``create_app(..., clock=clock.now)``)."""

from __future__ import annotations

import threading

from sessiond.ids import now_ms


class Clock:
    """The wall clock plus whatever the test has ``advance``d it by.

    Time still flows (ordering by time keeps working), and a TTL passes the moment the
    test says so instead of after a sleep. Thread-safe: the app reads it on its workers.
    """

    def __init__(self) -> None:
        self._offset_ms = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        """Milliseconds since the epoch, as the app's transactions see them."""
        with self._lock:
            return now_ms() + self._offset_ms

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never back: stored times only grow)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._offset_ms += round(seconds * 1000)
