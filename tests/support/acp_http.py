"""A client of ``/api/acp`` for tests: JSON-RPC calls, and the SSE stream read in a
thread (so that a test never blocks on it without a timeout)."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

from fastapi.testclient import TestClient


class AcpHttp:
    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}
        self.ids = 0

    def post(self, body: Any) -> Any:
        r = self.client.post("/api/acp", json=body, headers=self.headers)
        assert r.status_code in (200, 204), r.text
        return r.json() if r.status_code == 200 else None

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-RPC response (``result`` or ``error``)."""
        self.ids += 1
        msg = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params or {}}
        out = self.post(msg)
        assert out["id"] == self.ids, out
        return out  # type: ignore[no-any-return]

    def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        out = self.call(method, params)
        assert "result" in out, out
        return out["result"]

    def stream(self, session_id: str, last_event_id: str | None = None) -> AcpStream:
        headers = dict(self.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return AcpStream(self.client, f"/api/acp?sessionId={session_id}", headers)


class AcpStream:
    """SSE messages as ``(id or None, parsed data)``, read by a daemon thread."""

    def __init__(self, client: TestClient, url: str, headers: dict[str, str]) -> None:
        self.items: queue.Queue[tuple[str | None, Any]] = queue.Queue()
        self.status: int | None = None
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(client, url, headers), daemon=True)
        self._thread.start()

    def _read(self, client: TestClient, url: str, headers: dict[str, str]) -> None:
        try:
            self._lines(client, url, headers)
        except Exception as e:  # the app stopped under the stream (end of a test)
            self.error = e

    def _lines(self, client: TestClient, url: str, headers: dict[str, str]) -> None:
        with client.stream("GET", url, headers=headers) as r:
            self.status = r.status_code
            event_id: str | None = None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    self.items.put((event_id, json.loads(line[5:].strip())))
                elif line == "":
                    event_id = None

    def next(self, timeout: float = 20) -> tuple[str | None, Any]:
        return self.items.get(timeout=timeout)

    def until(self, predicate: Any, timeout: float = 30) -> list[tuple[str | None, Any]]:
        """Every message up to and including the first that matches ``predicate``."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message; saw {[m for _, m in seen]}")
            item = self.items.get(timeout=left)
            seen.append(item)
            if predicate(item[1]):
                return seen

    def close(self) -> None:
        self._stop.set()
