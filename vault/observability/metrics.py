"""Prometheus metrics. One registry per app, so every test can build its own app.

Labels carry only route templates, methods, statuses and fixed reasons: never an id, a
subject reference or anything a client chose.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "datavault_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "datavault_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "datavault_http_bytes_in", "Request body bytes received", registry=self.registry
        )
        self.bytes_out = Counter(
            "datavault_http_bytes_out", "Response body bytes sent", registry=self.registry
        )
        self.auth_failures = Counter(
            "datavault_auth_failures",
            "Failed authentications by reason",
            ["reason"],
            registry=self.registry,
        )
        self.access_log_failures = Counter(
            "datavault_access_log_write_failures",
            "Requests refused because their access-log row could not be written",
            registry=self.registry,
        )
        self.integrity_failures = Counter(
            "datavault_integrity_failures",
            "Ciphertexts or chains that failed an integrity check",
            ["kind"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "datavault_ready", "1 when database and blob store answer", registry=self.registry
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
