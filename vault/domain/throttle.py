"""Throttling of repeated failed authentication, per client IP."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class FailureThrottle:
    """At most `limit` failures per IP in a sliding `window`; then refuse until the oldest
    failure leaves the window. In memory, per process: with N API replicas an attacker
    gets N times the budget, which still turns guessing a 256-bit key into nothing."""

    # Bounds memory under a flood of distinct source addresses.
    MAX_TRACKED_ADDRESSES = 100_000

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, ip: str) -> int | None:
        """Seconds to wait if `ip` is throttled now, else None."""
        failures = self._recent(ip)
        if failures is None or len(failures) < self._limit:
            return None
        return max(1, math.ceil(failures[0] + self._window - self._clock()))

    def record_failure(self, ip: str) -> None:
        if ip not in self._failures and len(self._failures) >= self.MAX_TRACKED_ADDRESSES:
            self._evict()
        self._failures.setdefault(ip, deque()).append(self._clock())

    def _recent(self, ip: str) -> deque[float] | None:
        failures = self._failures.get(ip)
        if failures is None:
            return None
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[ip]
            return None
        return failures

    def _evict(self) -> None:
        for ip in list(self._failures):
            self._recent(ip)
        if len(self._failures) >= self.MAX_TRACKED_ADDRESSES:
            oldest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[oldest]
