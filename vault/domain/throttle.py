"""Throttling of repeated failed authentication, per client IP."""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable

# Memory bound: at most this many addresses are tracked at once, each with at most
# `limit` failure times (packed doubles): about 40 MiB in all with the default limit of
# 20 (measured). Reached only under a flood of distinct source addresses.
MAX_TRACKED_ADDRESSES = 100_000


class FailureThrottle:
    """API.md: more than `limit` failures from one IP within `window` seconds, and its
    further failing attempts are refused for `window` seconds from the one that crossed
    the limit. A fixed block rather than a sliding window: with a sliding window the
    refusal would lift as soon as the oldest failure aged out, seconds after it began.

    Only failing attempts consult the throttle, so a valid key is never refused by it.
    In memory, per process: with N API replicas an address gets N times the budget
    (N x `limit` per window), which still turns guessing a 256-bit key into nothing.

    Every operation is O(1) amortised, whatever the number of tracked addresses: the
    addresses still counting are kept in order of their last failure and the blocked ones
    in order of their block's end (every block lasts one window), so what has expired is
    always at the front of one of the two and is dropped from there, each address once.

    At MAX_TRACKED_ADDRESSES, after dropping what has expired:
    - the counting address that failed least recently is forgotten (it had fewer than
      `limit` failures in the window, the fewest of anyone's recent ones to lose);
    - a blocked address is never forgotten before its block ends, so no flood of new
      addresses can lift a block;
    - if every tracked address is blocked, a failure from a new address is refused (429)
      without being tracked: failing closed costs nothing to valid keys, which the
      throttle never sees, while failing open would hand out unthrottled guesses.
    Forgetting a counting address frees at most `limit` - 1 attempts for it, and costs
    the flood one failed attempt per address it adds; those attempts were guesses the
    flood could have made anyway, so flushing buys an attacker nothing it lacked."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_tracked: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._max_tracked = max_tracked
        # ip -> failure times within the window (oldest first); ordered by last failure.
        self._counting: OrderedDict[str, array[float]] = OrderedDict()
        # ip -> end of its block; ordered by that end (each block lasts one window).
        self._blocked: OrderedDict[str, float] = OrderedDict()
        # Entries looked at by expiry and eviction, for tests that check the work per
        # operation stays flat as the number of tracked addresses grows.
        self.entries_examined = 0

    @property
    def tracked(self) -> int:
        """Addresses held in memory (exported as a gauge)."""
        return len(self._counting) + len(self._blocked)

    def failed_attempt(self, ip: str) -> int | None:
        """What to answer a failing attempt from `ip`: None for its 401 (the attempt is
        counted), else the Retry-After seconds of its 429."""
        blocked = self.blocked_for(ip)
        if blocked is not None:
            return blocked
        if not self.record_failure(ip):
            return max(1, math.ceil(self._window))
        return None

    def blocked_for(self, ip: str) -> int | None:
        """For a failing attempt from `ip`, before it is counted: the whole seconds (≥ 1,
        rounded up) until `ip` is heard again, or None if this attempt gets its 401.
        The first attempt after `limit` failures within the window starts the block;
        attempts during the block neither count nor extend it."""
        now = self._clock()
        self._expire(now)
        until = self._blocked.get(ip)
        if until is None:
            failures = self._counting.get(ip)
            if failures is None:
                return None
            self._drop_old_failures(failures, now)
            if len(failures) < self._limit:
                return None
            # Crossing the limit: the block replaces the count, so once it ends the
            # address starts again with a whole budget, not an inherited one.
            del self._counting[ip]
            until = self._blocked[ip] = now + self._window
        return max(1, math.ceil(until - now))

    def record_failure(self, ip: str) -> bool:
        """Count a failure from `ip`; False if it could not be tracked because every
        tracked address is blocked (the caller then refuses the attempt)."""
        now = self._clock()
        self._expire(now)
        if ip in self._blocked:
            return True  # a failure during a block neither counts nor extends it
        failures = self._counting.get(ip)
        if failures is None:
            if self.tracked >= self._max_tracked and not self._forget_one_counting():
                return False
            failures = self._counting[ip] = array("d")
        else:
            self._counting.move_to_end(ip)
            self._drop_old_failures(failures, now)
        failures.append(now)
        return True

    def _drop_old_failures(self, failures: array[float], now: float) -> None:
        # At most `limit` entries: the cost depends on the limit, never on the addresses.
        del failures[: bisect_right(failures, now - self._window)]

    def _expire(self, now: float) -> None:
        """Drop ended blocks and addresses whose last failure left the window. Both
        orders put the expired at the front; each entry is dropped once (amortised O(1))."""
        while self._blocked:
            ip, until = next(iter(self._blocked.items()))
            self.entries_examined += 1
            if until > now:
                break
            del self._blocked[ip]
        horizon = now - self._window
        while self._counting:
            ip, failures = next(iter(self._counting.items()))
            self.entries_examined += 1
            if failures and failures[-1] > horizon:
                break
            del self._counting[ip]

    def _forget_one_counting(self) -> bool:
        if not self._counting:
            return False
        self._counting.popitem(last=False)
        self.entries_examined += 1
        return True
