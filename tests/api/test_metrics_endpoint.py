"""GET /metrics of a running vault: build info, job health series, no `*_created`."""

from __future__ import annotations

import time

from tests.support import ServerThread
from vault.version import distribution_version


def test_metrics_has_build_info_job_health_and_no_created_series(server: ServerThread) -> None:
    with server.client() as http:
        http.get("/healthz")
        deadline = time.monotonic() + 20
        while True:
            text = http.get("/metrics").text
            # The monitor job runs at start; once it has, its success is on /metrics.
            if 'datavault_job_runs_total{job_name="overdue-monitor",outcome="ok"} 0.0' not in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
    assert f'version="{distribution_version()}"' in text
    assert "datavault_build_info{" in text
    for series in (
        'datavault_job_runs_total{job_name="erasure-executor",outcome="failed"}',
        'datavault_job_last_success_timestamp_seconds{job_name="shred-ledger"}',
        'datavault_job_interval_seconds{job_name="erasure-executor"} 2.0',
    ):
        assert series in text, series
    assert "_created" not in text
