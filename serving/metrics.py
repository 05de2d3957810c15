"""Prometheus metrics of the API: request latency per route template, requests by status.

Why route templates (``/households/{household_id}``) and not paths: one series per route, not
one per household, and requests matching no route share the label ``<unmatched>`` so scanners
cannot blow up the series count. A registry per app: tests build several apps in one process.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"


class ApiMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.latency = Histogram(
            "hems_api_request_duration_seconds",
            "Time from request start to the end of the response body, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "hems_api_requests",
            "Requests answered, by route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "hems_api_rate_limited", "Requests refused with 429", registry=self.registry
        )
        self.rate_limit_errors = Counter(
            "hems_api_rate_limit_errors",
            "Rate-limit checks that failed outright: the request was let through",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.rate_limit_redis_errors = Gauge(
            "hems_api_rate_limit_redis_errors",
            "Redis failures of the rate limiter since start (it limits in-process meanwhile)",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # the labelled children, looked up once per (method, route, status): ``labels()`` takes a
        # lock and validates its arguments on every call
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self.latency.labels(method, route),
                self.requests.labels(method, route, str(status)),
            )
        children[0].observe(seconds)
        children[1].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
