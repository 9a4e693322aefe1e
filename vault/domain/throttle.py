"""Throttling of repeated failed authentication, per client: an IPv4 address, or an IPv6
client's /64."""

from __future__ import annotations

import ipaddress
import math
import time
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable

from vault.domain.client_ip import IPAddress, canonical

# Memory bound: at most this many clients are tracked at once, each with at most
# `limit` failure times (packed doubles): about 40 MiB in all with the default limit of
# 20 (measured). Reached only under a flood of distinct source addresses.
MAX_TRACKED_ADDRESSES = 100_000
# Every IPv6 subscriber is handed at least a /64 (RFC 6177) and picks addresses in it at
# will (privacy extensions rotate them anyway), so one IPv6 client is its /64.
IPV6_CLIENT_PREFIX = 64


def throttled_client(ip: IPAddress | None) -> str:
    """What the throttle counts failures against: an IPv4 address on its own, an IPv6
    address by its /64, an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as its IPv4 address
    (the same client whichever way the proxy spells it). No address at all (no peer) is
    one shared client, "unknown"."""
    if ip is None:
        return "unknown"
    ip = canonical(ip)  # the one place that says an IPv4 client's two spellings are one
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class FailureThrottle:
    """API.md: more than `limit` failures from one client within `window` seconds (a client
    is what `throttled_client` makes of its IP, the one place that decides), and its
    further failing attempts are refused for `window` seconds from the one that crossed
    the limit. A fixed block rather than a sliding window: with a sliding window the
    refusal would lift as soon as the oldest failure aged out, seconds after it began.

    Only failing attempts consult the throttle, so a valid key is never refused by it.
    In memory, per process: with N API replicas a client gets N times the budget
    (N x `limit` per window), which still turns guessing a 256-bit key into nothing.

    Keying an IPv6 client by its /64 never adds entries (addresses rotated within one
    /64 are one entry, so the memory bound below holds as before). No wider budget per
    /48: a /48 is often a whole site or organisation whose people would then share
    one budget, while an attacker holding one gains only 2^16 budgets of `limit`
    guesses, still nothing against the 128 bits any key has at
    least; a flood of /64s meets the same bound
    as a flood of IPv4 addresses.

    Every operation is O(1) amortised, whatever the number of tracked clients: the
    clients still counting are kept in order of their last failure and the blocked ones
    in order of their block's end (every block lasts one window), so what has expired is
    always at the front of one of the two and is dropped from there, each client once.

    At MAX_TRACKED_ADDRESSES, after dropping what has expired:
    - the counting client that failed least recently is forgotten (it had fewer than
      `limit` failures in the window, the fewest of anyone's recent ones to lose);
    - a blocked client is never forgotten before its block ends, so no flood of new
      addresses can lift a block;
    - if every tracked client is blocked, a failure from a new client is refused (429)
      without being tracked: failing closed costs nothing to valid keys, which the
      throttle never sees, while failing open would hand out unthrottled guesses.
    Forgetting a counting client frees at most `limit` - 1 attempts for it, and costs
    the flood one failed attempt per client it adds; those attempts were guesses the
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
        # client -> failure times within the window (oldest first); ordered by last failure.
        self._counting: OrderedDict[str, array[float]] = OrderedDict()
        # client -> end of its block; ordered by that end (each block lasts one window).
        self._blocked: OrderedDict[str, float] = OrderedDict()
        # Entries looked at by expiry and eviction, for tests that check the work per
        # operation stays flat as the number of tracked addresses grows.
        self.entries_examined = 0

    @property
    def tracked(self) -> int:
        """Clients (IPv4 addresses, IPv6 /64s) held in memory (exported as a gauge)."""
        return len(self._counting) + len(self._blocked)

    def failed_attempt(self, ip: IPAddress | None) -> int | None:
        """What to answer a failing attempt from `ip`: None for its 401 (the attempt is
        counted), else the Retry-After seconds of its 429."""
        blocked = self.blocked_for(ip)
        if blocked is not None:
            return blocked
        if not self.record_failure(ip):
            return max(1, math.ceil(self._window))
        return None

    def blocked_for(self, ip: IPAddress | None) -> int | None:
        """For a failing attempt from `ip`, before it is counted: the whole seconds (≥ 1,
        rounded up) until its client is heard again, or None if this attempt gets its 401.
        The first attempt after `limit` failures within the window starts the block;
        attempts during the block neither count nor extend it."""
        client = throttled_client(ip)
        now = self._clock()
        self._expire(now)
        until = self._blocked.get(client)
        if until is None:
            failures = self._counting.get(client)
            if failures is None:
                return None
            self._drop_old_failures(failures, now)
            if len(failures) < self._limit:
                return None
            # Crossing the limit: the block replaces the count, so once it ends the
            # client starts again with a whole budget, not an inherited one.
            del self._counting[client]
            until = self._blocked[client] = now + self._window
        return max(1, math.ceil(until - now))

    def record_failure(self, ip: IPAddress | None) -> bool:
        """Count a failure from `ip`; False if it could not be tracked because every
        tracked client is blocked (the caller then refuses the attempt)."""
        client = throttled_client(ip)
        now = self._clock()
        self._expire(now)
        if client in self._blocked:
            return True  # a failure during a block neither counts nor extends it
        failures = self._counting.get(client)
        if failures is None:
            if self.tracked >= self._max_tracked and not self._forget_one_counting():
                return False
            failures = self._counting[client] = array("d")
        else:
            self._counting.move_to_end(client)
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
            client, until = next(iter(self._blocked.items()))
            self.entries_examined += 1
            if until > now:
                break
            del self._blocked[client]
        horizon = now - self._window
        while self._counting:
            client, failures = next(iter(self._counting.items()))
            self.entries_examined += 1
            if failures and failures[-1] > horizon:
                break
            del self._counting[client]

    def _forget_one_counting(self) -> bool:
        if not self._counting:
            return False
        self._counting.popitem(last=False)
        self.entries_examined += 1
        return True
