"""The job runner counts each run by outcome and keeps the time of the last success."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from vault.observability.metrics import Metrics
from workers.runner import JobRunner, PeriodicJob


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _run_for(jobs: list[PeriodicJob], metrics: Metrics, seconds: float) -> None:
    async def run() -> None:
        runner = JobRunner(jobs, metrics)
        runner.start()
        await asyncio.sleep(seconds)
        await runner.stop()

    asyncio.run(run())


def test_failed_and_ok_runs_are_counted_per_job() -> None:
    calls = {"n": 0}

    async def fails_twice_then_works() -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("not yet")

    async def always_fails() -> None:
        raise ValueError("broken")

    metrics = Metrics()
    before = time.time()
    jobs = [PeriodicJob("flaky", 0.01, fails_twice_then_works)]
    jobs.append(PeriodicJob("dead", 0.01, always_fails))
    _run_for(jobs, metrics, 0.3)
    samples = _samples(metrics)
    runs = "datavault_job_runs_total"
    assert samples[(runs, (("job_name", "flaky"), ("outcome", "failed")))] == 2
    assert samples[(runs, (("job_name", "flaky"), ("outcome", "ok")))] >= 1
    assert samples[(runs, (("job_name", "dead"), ("outcome", "ok")))] == 0
    assert samples[(runs, (("job_name", "dead"), ("outcome", "failed")))] >= 2
    last = "datavault_job_last_success_timestamp_seconds"
    dead_since = samples[(last, (("job_name", "dead"),))]
    flaky_ok = samples[(last, (("job_name", "flaky"),))]
    # A job that never succeeded ages from the moment the runner started it.
    assert before <= dead_since < flaky_ok <= time.time()
    assert samples[("datavault_job_interval_seconds", (("job_name", "dead"),))] == 0.01


def test_series_exist_before_the_first_run_ends() -> None:
    async def slow() -> None:
        await asyncio.sleep(10)

    metrics = Metrics()
    _run_for([PeriodicJob("slow", 60, slow)], metrics, 0.05)
    samples = _samples(metrics)
    for outcome in ("ok", "failed"):
        key = ("datavault_job_runs_total", (("job_name", "slow"), ("outcome", outcome)))
        assert samples[key] == 0


def test_a_runner_without_metrics_still_runs_jobs() -> None:
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    async def run() -> bool:
        runner = JobRunner([PeriodicJob("plain", 60, job)])
        runner.start()
        await asyncio.wait_for(ran.wait(), 5)
        await runner.stop()
        return ran.is_set()

    assert asyncio.run(run())
