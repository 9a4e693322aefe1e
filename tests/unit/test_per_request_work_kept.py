"""Per-request work done once per process (issue 19, sixth round): the request metrics'
children bound once per series, and the access log's keyed hash of a client address
kept. Each gives what the work done anew would, and stays bounded."""

from __future__ import annotations

import os
from typing import Any, cast

from crypto.mac import keyed_hash
from crypto.secrets import SecretBytes
from vault.observability import metrics as metrics_module
from vault.observability.metrics import Metrics
from vault.services import access_log
from vault.services.access_log import AccessLogWriter


def _count(metrics: Metrics, method: str, route: str, status: str) -> float | None:
    labels = {"method": method, "route": route, "status": status}
    return metrics.registry.get_sample_value("datavault_http_requests_total", labels)


def _latency_count(metrics: Metrics, method: str, route: str) -> float | None:
    labels = {"method": method, "route": route}
    name = "datavault_http_request_duration_seconds_count"
    return metrics.registry.get_sample_value(name, labels)


def test_each_request_counts_once_in_its_own_series() -> None:
    metrics = Metrics()
    route = "/v1/subjects/{ref}/artefacts/{artefact_id}/content"
    metrics.observe_request("GET", route, 206, 0.002)
    metrics.observe_request("GET", route, 206, 0.003)
    metrics.observe_request("GET", route, 404, 0.001)
    assert _count(metrics, "GET", route, "206") == 2
    assert _count(metrics, "GET", route, "404") == 1
    assert _latency_count(metrics, "GET", route) == 3


def test_series_beyond_the_bound_are_counted_but_not_kept_bound(monkeypatch: Any) -> None:
    monkeypatch.setattr(metrics_module, "_MAX_BOUND_REQUEST_SERIES", 2)
    metrics = Metrics()
    for status in (200, 201, 202, 202):
        metrics.observe_request("GET", "/v1/x", status, 0.001)
    assert len(cast(Any, metrics)._request_children) == 2
    assert _count(metrics, "GET", "/v1/x", "202") == 2  # unbound, still counted
    assert _latency_count(metrics, "GET", "/v1/x") == 4


def test_a_kept_address_hash_is_the_keyed_hash_and_the_kept_set_is_bounded(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(access_log, "IP_HASHES_KEPT", 3)
    key = SecretBytes(os.urandom(32))
    writer = AccessLogWriter(cast(Any, None), key)
    for ip in ("192.0.2.1", None, "192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.3"):
        assert writer.ip_hash(ip) == keyed_hash(key, (ip or "").encode())
    assert len(cast(Any, writer)._ip_hashes) <= 3
    assert writer.ip_hash(None) == writer.ip_hash("")  # no address: the empty string's
