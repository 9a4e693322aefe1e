"""A job with a wake event runs as soon as it is set, and on its interval without it; a
wake-up during a run gets a run of its own; a failing job is not spun by wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from vault.services.wakeups import CHANNELS, ERASURES_DUE, WakeupListener, WakeupSender
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


class _SlowNotifier:
    """Stands in for the database: each NOTIFY statement takes a while, as a commit does."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[list[tuple[str, str]]] = []
        self.fail = fail

    async def untenanted_fetchrow(
        self, _query: str, channels: list[str], tenants: list[str]
    ) -> None:
        await asyncio.sleep(0.02)
        if self.fail:
            raise OSError("connection lost")
        self.sent.append(list(zip(channels, tenants, strict=True)))


def test_wakeups_asked_for_during_one_go_out_together_in_the_next() -> None:
    async def scenario() -> list[list[tuple[str, str]]]:
        db = _SlowNotifier()
        sender = WakeupSender(db)  # type: ignore[arg-type]
        sender.wake(ERASURES_DUE, "t1")
        await asyncio.sleep(0)  # the first is on its way
        for tenant in ("t1", "t2", "t1", "t3"):
            sender.wake(ERASURES_DUE, tenant)
        await sender.flush()
        return db.sent

    assert asyncio.run(scenario()) == [
        [(ERASURES_DUE, "t1")],
        [(ERASURES_DUE, "t1"), (ERASURES_DUE, "t2"), (ERASURES_DUE, "t3")],
    ]


def test_a_wakeup_that_cannot_be_sent_is_dropped_and_the_next_one_goes_out() -> None:
    async def scenario() -> list[list[tuple[str, str]]]:
        db = _SlowNotifier(fail=True)
        sender = WakeupSender(db)  # type: ignore[arg-type]
        sender.wake(ERASURES_DUE, "t1")
        await sender.flush()
        db.fail = False
        sender.wake(ERASURES_DUE, "t2")
        await sender.flush()
        return db.sent

    assert asyncio.run(scenario()) == [[(ERASURES_DUE, "t2")]]


def test_an_unknown_wakeup_channel_is_refused() -> None:
    async def scenario() -> None:
        WakeupSender(_SlowNotifier()).wake("datavault_other", "t1")  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="unknown wake-up channel"):
        asyncio.run(scenario())
