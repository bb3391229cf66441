"""Prometheus metrics on a registry owned by the app (no process-global registry)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest


class Metrics:
    """The metrics of one process: with ``serve --workers N`` each worker has its own,
    named by ``sessiond_instance_info{instance=...}`` (scrape each, or sum)."""

    def __init__(self, instance: str = "") -> None:
        self.registry = CollectorRegistry()
        Info("sessiond_instance", "This process: its instance id.", registry=self.registry).info(
            {"instance": instance}
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "sessiond_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sessiond_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.events_published = Counter(
            "sessiond_events_published_total",
            "Committed events handed to the bus.",
            registry=self.registry,
        )
        self.sse_subscribers = Gauge(
            "sessiond_sse_subscribers",
            "Open SSE event streams.",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request; label children are cached (``labels()`` is slow on a hot path)."""
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(route),
            )
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
