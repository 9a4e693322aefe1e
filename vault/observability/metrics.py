"""Prometheus metrics. One registry per app, so every test can build its own app.

Labels carry only route templates, methods, statuses and fixed reasons: never an id, a
subject reference or anything a client chose.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from vault.domain.erasures import ErasureStatus
from vault.domain.throttle import FailureThrottle
from vault.domain.webhooks import AttemptOutcome
from vault.version import distribution_version, python_version

# The fixed values of erasures.status: the only label the erasure gauge has.
ERASURE_STATUSES = tuple(ErasureStatus)
# Request series whose metric children are kept bound (Metrics.observe_request): more
# than the routes x methods x statuses the vault answers.
_MAX_BOUND_REQUEST_SERIES = 4096


class Metrics:
    def __init__(self) -> None:
        # No `*_created` series: a creation timestamp per counter and histogram doubles
        # the series count for nothing our alerts or dashboard use. Process-wide setting.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.build_info = Gauge(
            "datavault_build_info",
            "Always 1; the labels say which datavault and Python this process runs",
            ["version", "python"],
            registry=self.registry,
        )
        self.build_info.labels(distribution_version(), python_version()).set(1)
        self.requests = Counter(
            "datavault_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
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
            "Failed authentications by reason: invalid (401), throttled (429), address (403: "
            "a key used outside its allowed CIDRs)",
            ["reason"],
            registry=self.registry,
        )
        # The failed-authentication throttle is per process: with N API replicas an
        # address gets N x this limit per window (README, API keys).
        self.auth_failure_limit = Gauge(
            "datavault_auth_failure_limit",
            "Failed authentications one client (IPv4 address, IPv6 /64) may make per window "
            "in this process "
            "(DATAVAULT_AUTH_FAILURE_LIMIT); N API replicas allow N times as many",
            registry=self.registry,
        )
        self.auth_failure_window = Gauge(
            "datavault_auth_failure_window_seconds",
            "The failed-authentication window and block (DATAVAULT_AUTH_FAILURE_WINDOW_SECONDS)",
            registry=self.registry,
        )
        self.auth_throttle_tracked = Gauge(
            "datavault_auth_throttle_tracked_addresses",
            "Clients (IPv4 addresses, IPv6 /64s) the failed-authentication throttle holds in "
            "memory in this process (at most 100,000)",
            registry=self.registry,
        )
        self.access_log_failures = Counter(
            "datavault_access_log_write_failures",
            "Requests refused because their access-log row could not be written",
            registry=self.registry,
        )
        self.transfers_cut = Counter(
            "datavault_transfers_cut",
            "Downloads, exports and uploads cut by the clock, by reason: api_key_not_live, "
            "data_key_destroyed, no_longer_readable (subject restricted or data kept by an "
            "erasure), unconfirmed (their keys could not be checked in time)",
            ["reason"],
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
        # Deletion-guarantee gauges, refreshed from the database by the monitor job
        # (workers/monitor.py), so every process reports the same deployment-wide values.
        # Summed over tenants: no tenant id ever becomes a label.
        self.erasures = Gauge(
            "datavault_erasures",
            "Erasure instructions by status",
            ["status"],
            registry=self.registry,
        )
        for status in ERASURE_STATUSES:
            self.erasures.labels(status).set(0)
        self.erasure_oldest_open_age = Gauge(
            "datavault_erasure_oldest_open_age_seconds",
            "Age since its request of the oldest erasure the vault still has to do "
            "(in_progress, or scheduled with not_before passed; held ones and those still "
            "in their grace period are not counted), 0 if none",
            registry=self.registry,
        )
        self.erasures_overdue = Gauge(
            "datavault_erasures_overdue",
            "Erasures the vault still has to do (scheduled or in_progress) past their due_at; "
            'held ones are not overdue (see datavault_erasures{status="held"})',
            registry=self.registry,
        )
        self.erasures_rate_braked = Gauge(
            "datavault_erasures_rate_braked",
            "Scheduled erasures the rate brake still holds back (a stolen erasure key?)",
            registry=self.registry,
        )
        self.root_epoch_age = Gauge(
            "datavault_root_epoch_age_seconds",
            "Age of the current root-key epoch (the schedule starts a new one every "
            "DATAVAULT_EPOCH_DAYS)",
            registry=self.registry,
        )
        self.holds_active = Gauge(
            "datavault_holds_active",
            "Legal holds neither released nor expired",
            registry=self.registry,
        )
        self.holds_expiring_7d = Gauge(
            "datavault_holds_expiring_7d",
            "Active legal holds that expire within 7 days",
            registry=self.registry,
        )
        self.keys_destroyed = Gauge(
            "datavault_keys_destroyed",
            "Keys destroyed so far (shred-ledger outbox rows, published or not)",
            registry=self.registry,
        )
        self.ledger_lag = Gauge(
            "datavault_ledger_lag_seconds",
            "Age of the oldest destroyed key not yet published to the shred ledger (0 if none)",
            registry=self.registry,
        )
        self.ledger_objects = Gauge(
            "datavault_ledger_objects",
            "Shred-ledger objects not folded into a checkpoint (what `datavault ledger "
            "verify` reads), from the head the database recorded",
            registry=self.registry,
        )
        self.ledger_folded_through = Gauge(
            "datavault_ledger_folded_through",
            "The last shred-ledger entry folded into a signed checkpoint (0: none)",
            registry=self.registry,
        )
        self.deletion_violations = Gauge(
            "datavault_deletion_invariant_violations",
            "Violations of the deletion invariants found by the last scheduled "
            "`datavault check deletion` in this worker (0 where it has not run)",
            registry=self.registry,
        )
        self.worker_job_lag = Gauge(
            "datavault_worker_job_lag_seconds",
            "How long past not_before the oldest due, unclaimed erasure waits (0 if none)",
            registry=self.registry,
        )

        # Webhooks (workers/webhooks.py). Counters per process (attempts happen in workers);
        # the queue gauges are deployment-wide, refreshed by the monitor job.
        self.webhook_attempts = Counter(
            "datavault_webhook_attempts",
            "Webhook delivery attempts in this process by outcome: delivered (2xx), "
            "http_error, timeout, connection_failed, protocol_error, dns_failed, "
            "destination_refused (a private address at delivery time), secret_unavailable",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in AttemptOutcome:
            self.webhook_attempts.labels(outcome.value)
        self.webhook_deliveries_given_up = Counter(
            "datavault_webhook_deliveries_given_up",
            "Webhook deliveries whose retry schedule (over 24 h) ran out in this process",
            registry=self.registry,
        )
        self.webhook_queue_age = Gauge(
            "datavault_webhook_queue_age_seconds",
            "Age of the oldest webhook delivery still pending (queued or between retries), "
            "0 if none",
            registry=self.registry,
        )
        self.webhook_deliveries_pending = Gauge(
            "datavault_webhook_deliveries_pending",
            "Webhook deliveries queued or waiting for a retry",
            registry=self.registry,
        )
        self.ledger_folded_objects = Counter(
            "datavault_ledger_folded_objects",
            "Shred-ledger objects this process folded into checkpoints (and removed)",
            registry=self.registry,
        )

        # Background jobs (workers/runner.py). `job_name`, not `job`: Prometheus gives every
        # scraped series the target's own `job` label and would rename ours `exported_job`.
        self.job_runs = Counter(
            "datavault_job_runs",
            "Background job runs in this process by job and outcome (ok or failed)",
            ["job_name", "outcome"],
            registry=self.registry,
        )
        self.job_last_success = Gauge(
            "datavault_job_last_success_timestamp_seconds",
            "Unix time of the job's last successful run in this process (the time the "
            "process started its jobs, until the first success)",
            ["job_name"],
            registry=self.registry,
        )
        self.job_interval = Gauge(
            "datavault_job_interval_seconds",
            "Pause between two runs of the job (the alert thresholds derive from it)",
            ["job_name"],
            registry=self.registry,
        )

    def watch_auth_throttle(self, throttle: FailureThrottle, limit: int, window: float) -> None:
        self.auth_failure_limit.set(limit)
        self.auth_failure_window.set(window)
        self.auth_throttle_tracked.set_function(lambda: throttle.tracked)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # `.labels()` takes the metric's lock and builds its key on every call; the
        # children are bound once per (method, route, status) instead (issue 19, sixth
        # round). The callers bound the combinations (known methods, route templates),
        # and so does _MAX_BOUND_REQUEST_SERIES should one not.
        series = (method, route, status)
        children = self._request_children.get(series)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            if len(self._request_children) < _MAX_BOUND_REQUEST_SERIES:
                self._request_children[series] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
