"""A job with a wake event runs as soon as it is set, and on its interval without it; a
wake-up during a run gets a run of its own; a failing job is not spun by wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from vault.services.wakeups import CHANNELS, WakeupListener
from workers.runner import JobRunner, PeriodicJob


async def _started(jobs: list[PeriodicJob]) -> JobRunner:
    runner = JobRunner(jobs)
    runner.start()
    await asyncio.sleep(0.05)  # the first run, at start
    return runner


def test_wake_event_runs_the_job_at_once_instead_of_after_its_interval() -> None:
    async def scenario() -> list[int]:
        runs: list[int] = []
        wake = asyncio.Event()

        async def job() -> None:
            runs.append(len(runs))

        runner = await _started([PeriodicJob("woken", 3600, job, wake)])
        counts = [len(runs)]
        for _ in range(3):
            wake.set()
            await asyncio.sleep(0.05)
            counts.append(len(runs))
        await asyncio.sleep(0.2)  # nothing set: no run
        counts.append(len(runs))
        await runner.stop()
        return counts

    assert asyncio.run(scenario()) == [1, 2, 3, 4, 4]


def test_job_without_wake_ups_still_runs_on_its_interval() -> None:
    async def scenario() -> int:
        runs = 0
        wake = asyncio.Event()

        async def job() -> None:
            nonlocal runs
            runs += 1

        runner = await _started([PeriodicJob("polled", 0.05, job, wake)])
        await asyncio.sleep(0.4)
        await runner.stop()
        return runs

    assert asyncio.run(scenario()) >= 4


def test_wake_up_during_a_run_gets_a_run_of_its_own() -> None:
    async def scenario() -> int:
        wake = asyncio.Event()
        runs = 0
        gate = asyncio.Event()

        async def job() -> None:
            nonlocal runs
            runs += 1
            if runs == 2:
                await gate.wait()  # the second run is under way when work arrives

        runner = await _started([PeriodicJob("busy", 3600, job, wake)])
        wake.set()
        await asyncio.sleep(0.05)
        wake.set()  # announced while run 2 is running
        gate.set()
        await asyncio.sleep(0.1)
        await runner.stop()
        return runs

    assert asyncio.run(scenario()) == 3


def test_failing_job_waits_its_interval_whatever_wakes_it() -> None:
    async def scenario() -> int:
        wake = asyncio.Event()
        runs = 0

        async def job() -> None:
            nonlocal runs
            runs += 1
            raise RuntimeError("database down")

        runner = await _started([PeriodicJob("failing", 3600, job, wake)])
        for _ in range(20):
            wake.set()
            await asyncio.sleep(0.01)
        await runner.stop()
        return runs

    assert asyncio.run(scenario()) == 1


def test_listener_refuses_a_channel_that_nothing_sends() -> None:
    with pytest.raises(ValueError, match="unknown wake-up channels"):
        WakeupListener("postgresql://unused", {"datavault_typo": asyncio.Event()})
    assert len(set(CHANNELS)) == len(CHANNELS)
