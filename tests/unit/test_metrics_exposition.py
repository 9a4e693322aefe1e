"""What /metrics exposes beyond the request and deletion metrics: build info, and no
`*_created` series."""

from __future__ import annotations

import platform

from vault.observability.metrics import Metrics
from vault.version import distribution_version


def test_build_info_names_version_and_python() -> None:
    text = Metrics().render().decode()
    expected = (
        f'datavault_build_info{{python="{platform.python_version()}",'
        f'version="{distribution_version()}"}} 1.0'
    )
    assert expected in text.splitlines()
    assert distribution_version() != "unknown"


def test_no_created_series_even_after_counting() -> None:
    metrics = Metrics()
    metrics.observe_request("GET", "/v1/tenant", 200, 0.01)
    metrics.auth_failures.labels("unknown_key").inc()
    metrics.job_runs.labels("retention", "ok").inc()
    text = metrics.render().decode()
    assert "datavault_http_requests_total" in text
    assert "_created" not in text
