"""Prometheus metrics for one app: requests, latency, verdicts, violations, deliveries, outbox depth.

Each app gets its own CollectorRegistry, so several apps in one process (tests) never share counts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Sub-millisecond to a second: the check path is expected in the low milliseconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's instruments, registered in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("assist_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("assist_request_duration_seconds", "HTTP request latency by route",
                                 ["route"], buckets=_BUCKETS, registry=r)
        self.verdicts = Counter("assist_verdicts", "Guard verdicts by endpoint and action",
                                ["endpoint", "action"], registry=r)
        self.violations = Counter("assist_violations", "Violations found, by category and action",
                                  ["category", "action"], registry=r)
        self.guard_latency = Histogram("assist_guard_check_seconds", "Time spent in the guard engine",
                                       buckets=_BUCKETS, registry=r)
        self.deliveries = Counter("assist_deliveries", "Outbox delivery outcomes (delivered, retry, failed)",
                                  ["platform", "outcome"], registry=r)
        self.outbox_depth = Gauge("assist_outbox_depth", "Replies accepted but not yet delivered", registry=r)
        self.inbound = Counter("assist_inbound_events", "Inbound platform events by source and kind",
                               ["source", "kind"], registry=r)

        # labels() takes a lock and builds a key each call; the request path is hot, so keep the children.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and record its latency."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def record_verdict(self, endpoint: str, action: str, violations: list[tuple[str, str]]) -> None:
        """Count one verdict and each of its (category, action) violations."""
        self.child(self.verdicts, endpoint, action).inc()
        for category, v_action in violations:
            self.child(self.violations, category, v_action).inc()

    def child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), remembered: labels() takes a lock and builds a key each call."""
        # Label values here come from fixed sets (endpoints, actions, rule categories), so the
        # cache stays as small as the metric's own children.
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
