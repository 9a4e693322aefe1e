"""GET /metrics of a running vault: build info, job health series, no `*_created`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support import ServerThread, running_server
from vault.config import Settings
from vault.version import distribution_version


@pytest.fixture
def serving(private_vault: Settings) -> Iterator[ServerThread]:
    """A vault that runs its background jobs, as `datavault serve` does: their health
    series are what this checks. On a database of its own: on the session's, the jobs'
    first round worked through every tenant the worker's earlier tests had left (an
    access-log anchor for each one's chain among them), seconds of CPU late in a run."""
    with running_server(private_vault, private_vault.database_url or "", run_jobs=True) as server:
        yield server


def test_metrics_has_build_info_job_health_and_no_created_series(serving: ServerThread) -> None:
    with serving.client() as http:
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
