"""watch_lease (vault/services/transfers.py): the clock that decides when a transfer is
cut, with a stand-in lease and short intervals so nothing waits long."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from vault.errors import KeyDestroyed, KeyNoLongerLive, Restricted, Unavailable, VaultError
from vault.services.transfers import TransferLease, watch_lease

EVERY = 0.02
LIMIT = 0.3


class _Lease:
    """Answers `confirm` from a script: None (live), an exception to raise, or "hang"."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.checks = 0
        self.ended = False

    async def confirm(self) -> None:
        self.checks += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer == "hang":
            await asyncio.sleep(3600)
        if isinstance(answer, BaseException):
            raise answer


def _watch(lease: _Lease, *, run_for: float = 2.0) -> tuple[VaultError | None, float]:
    async def run() -> tuple[VaultError | None, float]:
        started = time.monotonic()
        try:
            async with asyncio.timeout(run_for):
                reason = await watch_lease(cast(TransferLease, lease), every=EVERY, limit=LIMIT)
        except TimeoutError:
            return None, time.monotonic() - started
        return reason, time.monotonic() - started

    return asyncio.run(run())


def test_revoked_api_key_cuts_at_the_first_check() -> None:
    lease = _Lease(KeyNoLongerLive("invalid API key"))
    reason, took = _watch(lease)
    assert isinstance(reason, KeyNoLongerLive) and reason.__traceback__ is None
    assert lease.checks == 1 and took < LIMIT


def test_destroyed_data_key_cuts_once_it_is_seen() -> None:
    lease = _Lease(None, None, KeyDestroyed("gone"))
    reason, _ = _watch(lease)
    assert isinstance(reason, KeyDestroyed) and lease.checks == 3


def test_a_read_the_read_path_refuses_now_cuts_at_once() -> None:
    """A subject restricted since, or data kept by an erasure: a refusal, not a failed
    check that would be retried until the limit."""
    lease = _Lease(None, Restricted("processing of this subject is restricted"))
    reason, took = _watch(lease)
    assert isinstance(reason, Restricted) and reason.__traceback__ is None
    assert lease.checks == 2 and took < LIMIT


def test_live_lease_runs_on() -> None:
    lease = _Lease(None)
    reason, took = _watch(lease, run_for=LIMIT * 2)
    assert reason is None and took >= LIMIT * 2
    assert lease.checks >= 5  # on the clock, nobody reading


def test_failing_checks_cut_once_nothing_confirmed_the_keys_for_the_limit() -> None:
    lease = _Lease(Unavailable("database unavailable"))
    reason, took = _watch(lease)
    assert isinstance(reason, Unavailable)
    assert LIMIT <= took < LIMIT + 1.0  # the limit, not much later (a busy machine)
    assert lease.checks > 3  # retried until the limit


def test_a_hanging_check_cuts_at_the_limit() -> None:
    reason, took = _watch(_Lease("hang"))
    assert isinstance(reason, Unavailable)
    assert LIMIT <= took < LIMIT + 1.0  # the limit, not much later (a busy machine)


def test_a_check_that_fails_then_succeeds_does_not_cut() -> None:
    # Failures shorter than the limit, then live again: the limit counts from then.
    lease = _Lease(*[Unavailable("blip")] * 5, None)
    reason, _ = _watch(lease, run_for=LIMIT * 3)
    assert reason is None


def test_ended_lease_stops_without_a_cut() -> None:
    lease = _Lease(KeyNoLongerLive("invalid API key"))
    lease.ended = True
    reason, took = _watch(lease)
    assert reason is None and lease.checks == 0 and took < LIMIT


def test_a_watch_begun_late_checks_at_once_and_counts_the_limit_from_the_transfers_start() -> None:
    """The HTTP layer begins the watch when its first check is due (`started`): that
    check runs at once, and time before it counts towards the limit."""

    async def run() -> tuple[VaultError | None, float, int]:
        lease = _Lease(None)
        loop = asyncio.get_running_loop()
        watching = asyncio.create_task(
            watch_lease(cast(TransferLease, lease), every=1.0, limit=LIMIT, started=loop.time())
        )
        await asyncio.sleep(0.01)
        checks_at_once = lease.checks
        watching.cancel()
        failing = _Lease(Unavailable("database unavailable"))
        began = time.monotonic()
        reason = await watch_lease(
            cast(TransferLease, failing), every=EVERY, limit=LIMIT,
            started=loop.time() - LIMIT * 0.9,
        )  # fmt: skip
        return reason, time.monotonic() - began, checks_at_once

    reason, took, checks_at_once = asyncio.run(run())
    assert checks_at_once == 1  # not after `every` (1 s) more
    assert isinstance(reason, Unavailable)
    assert took < LIMIT * 0.5  # what was left of the limit, not a whole one


class _ClosingLease(_Lease):
    """A lease `_Watch.stop` can close."""

    def __init__(self, *answers: object) -> None:
        super().__init__(*answers)
        self.closed = False

    async def close(self, *, release: bool = True) -> None:
        self.closed = True


def test_a_transfer_that_ends_before_its_first_check_starts_no_watchdog() -> None:
    """A record's value or a seek's range is answered in milliseconds: the watchdog's
    first check (after `every`) is never due, so no task is started and none cancelled."""
    from vault.http.transfers import _Watch

    async def run() -> tuple[_ClosingLease, _Watch]:
        lease = _ClosingLease(None)
        watch = _Watch(EVERY * 5)
        watch.start(cast(TransferLease, lease))
        await asyncio.sleep(0)
        await watch.stop()
        await asyncio.sleep(EVERY * 10)  # long past when the first check was due
        return lease, watch

    lease, watch = asyncio.run(run())
    assert lease.checks == 0 and lease.closed
    assert watch.task is None and watch.timer is None


def test_a_transfer_still_running_when_its_first_check_is_due_is_watched_on_the_clock() -> None:
    from vault.http.transfers import _Watch

    async def run() -> tuple[_ClosingLease, _Watch, int, int]:
        lease = _ClosingLease(None)
        watch = _Watch(EVERY)
        watch.start(cast(TransferLease, lease))
        await asyncio.sleep(EVERY * 0.5)
        before_due = lease.checks
        await asyncio.sleep(EVERY * 5)
        while_running = lease.checks
        await watch.stop()
        return lease, watch, before_due, while_running

    lease, watch, before_due, while_running = asyncio.run(run())
    assert before_due == 0
    assert while_running >= 2  # at `every`, then every `every`
    assert watch.task is not None and watch.task.cancelled() and lease.closed
