"""Throttling of repeated failed authentication, per client IP."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Address:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float | None = None


class FailureThrottle:
    """API.md: more than `limit` failures from one IP within `window` seconds, and its
    further failing attempts are refused for `window` seconds from the one that crossed
    the limit. A fixed block rather than a sliding window: with a sliding window the
    refusal would lift as soon as the oldest failure aged out, seconds after it began.

    Only failing attempts consult the throttle, so a valid key is never refused by it.
    In memory, per process: with N API replicas an attacker gets N times the budget,
    which still turns guessing a 256-bit key into nothing."""

    # Bounds memory under a flood of distinct source addresses.
    MAX_TRACKED_ADDRESSES = 100_000

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._addresses: dict[str, _Address] = {}

    def blocked_for(self, ip: str) -> int | None:
        """For a failing attempt from `ip`, before it is counted: the whole seconds (≥ 1,
        rounded up) until `ip` is heard again, or None if this attempt gets its 401.
        The first attempt after `limit` failures within the window starts the block;
        attempts during the block neither count nor extend it."""
        address = self._current(ip)
        if address is None:
            return None
        now = self._clock()
        if address.blocked_until is None:
            if len(address.failures) < self._limit:
                return None
            # Crossing the limit: the block replaces the count, so once it ends the
            # address starts again with a whole budget, not an inherited one.
            address.blocked_until = now + self._window
            address.failures.clear()
        return max(1, math.ceil(address.blocked_until - now))

    def record_failure(self, ip: str) -> None:
        address = self._current(ip)
        if address is None:
            if len(self._addresses) >= self.MAX_TRACKED_ADDRESSES:
                self._evict()
            address = self._addresses[ip] = _Address()
        address.failures.append(self._clock())

    def _current(self, ip: str) -> _Address | None:
        """`ip`'s state with ended blocks and failures older than the window dropped;
        None (and forgotten) if nothing is left."""
        address = self._addresses.get(ip)
        if address is None:
            return None
        now = self._clock()
        if address.blocked_until is not None and now >= address.blocked_until:
            address.blocked_until = None
        horizon = now - self._window
        failures = address.failures
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures and address.blocked_until is None:
            del self._addresses[ip]
            return None
        return address

    def _evict(self) -> None:
        for ip in list(self._addresses):
            self._current(ip)
        if len(self._addresses) >= self.MAX_TRACKED_ADDRESSES:
            # Forget the address whose last sign of life is oldest; a blocked one counts
            # as alive until its block ends.
            oldest = min(self._addresses, key=lambda k: self._last_seen(self._addresses[k]))
            del self._addresses[oldest]

    def _last_seen(self, address: _Address) -> float:
        last_failure = address.failures[-1] if address.failures else -math.inf
        if address.blocked_until is None:
            return last_failure
        return max(last_failure, address.blocked_until - self._window)
