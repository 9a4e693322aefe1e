"""Periodic background jobs inside a vault process.

Each job is idempotent and safe to run in several processes at once (their writes are
guarded by state conditions), so every API replica may run them; a failed round is
logged and retried next round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("datavault.workers")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[object]]


class JobRunner:
    def __init__(self, jobs: list[PeriodicJob]) -> None:
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(job), name=job.name) for job in self._jobs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self, job: PeriodicJob) -> None:
        while True:
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job_failed", job=job.name, error_type=type(exc).__name__)
            await asyncio.sleep(job.interval_seconds)
