"""Periodic background jobs inside a vault process.

Each job is idempotent and safe to run in several processes at once (their writes are
guarded by state conditions), so every API replica may run them; a failed round is
logged and retried next round. Each run is counted by outcome, and the time of the last
success kept, per job (`datavault_job_*` on /metrics; the alerts in
deploy/prometheus/alerts.yaml fire on a job that keeps failing or stopped succeeding).

A job with a wake event (vault/services/wakeups.py) also runs as soon as the event is
set, instead of waiting out its interval; its interval stays as the fallback. The event
is cleared before each run, so work announced while a run is under way gets a run of its
own right after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from vault.observability.metrics import Metrics

log = structlog.get_logger("datavault.workers")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[object]]
    # Set to run the job now (a NOTIFY arrived); None: the interval alone.
    wake: asyncio.Event | None = None


JOB_OUTCOMES = ("ok", "failed")


class JobRunner:
    def __init__(self, jobs: list[PeriodicJob], metrics: Metrics | None = None) -> None:
        self._jobs = jobs
        self._metrics = metrics
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._metrics is not None:
            started = time.time()
            for job in self._jobs:
                # Every series exists from the start, so rate() and the alerts see the
                # first failure; until a first success the job ages from the start.
                for outcome in JOB_OUTCOMES:
                    self._metrics.job_runs.labels(job.name, outcome)
                self._metrics.job_last_success.labels(job.name).set(started)
                self._metrics.job_interval.labels(job.name).set(job.interval_seconds)
        self._tasks = [asyncio.create_task(self._loop(job), name=job.name) for job in self._jobs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self, job: PeriodicJob) -> None:
        while True:
            if job.wake is not None:
                job.wake.clear()
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job_failed", job=job.name, error_type=type(exc).__name__)
                self._count(job, "failed")
                # A failing job waits out its interval: wake-ups arriving meanwhile must
                # not turn it into a loop of failures.
                await asyncio.sleep(job.interval_seconds)
            else:
                self._count(job, "ok")
                await _pause(job)

    def _count(self, job: PeriodicJob, outcome: str) -> None:
        if self._metrics is None:
            return
        self._metrics.job_runs.labels(job.name, outcome).inc()
        if outcome == "ok":
            self._metrics.job_last_success.labels(job.name).set(time.time())


async def _pause(job: PeriodicJob) -> None:
    """The job's interval, or less if its wake event is set meanwhile."""
    if job.wake is None:
        await asyncio.sleep(job.interval_seconds)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(job.interval_seconds):
            await job.wake.wait()
