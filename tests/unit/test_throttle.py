"""The failed-authentication throttle against API.md: "More than 20 requests with a
missing or wrong key from one IP within a minute: further ones from that IP get 429 with
`Retry-After` for 60 s". `blocked_for` is asked for each failing attempt before it is
counted, as vault/http/auth.py does; None means the attempt gets its 401."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, ip_address

import pytest

from vault.domain.client_ip import IPAddress
from vault.domain.throttle import FailureThrottle, throttled_client

IP = ip_address("192.0.2.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _attempt(throttle: FailureThrottle, ip: IPAddress | str = IP) -> int | None:
    """One failing attempt: its Retry-After if refused (429), else None (401, counted)."""
    ip = ip_address(ip)
    blocked = throttle.blocked_for(ip)
    if blocked is None:
        throttle.record_failure(ip)
    return blocked


def test_twentieth_failure_is_heard_and_the_twenty_first_is_blocked_for_60_s() -> None:
    throttle = FailureThrottle(limit=20, window=60, clock=Clock())
    assert [_attempt(throttle) for _ in range(20)] == [None] * 20
    assert _attempt(throttle) == 60


def test_block_lasts_60_s_from_the_crossing_until_the_last_instant() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=20, window=60, clock=clock)
    for _ in range(20):
        assert _attempt(throttle) is None
        clock.now += 1  # spread over 20 s: the block must not lift when the first ages out
    crossing = clock.now
    assert _attempt(throttle) == 60
    clock.now = crossing + 59.5
    assert _attempt(throttle) == 1
    clock.now = crossing + 59.999
    assert _attempt(throttle) == 1
    clock.now = crossing + 60
    assert _attempt(throttle) is None


def test_block_starts_at_the_crossing_not_at_the_oldest_failure() -> None:
    # A sliding window would let this address go 5 s after the first 429, when the
    # failure from t=0 ages out; the contract says 60 s.
    clock = Clock()
    start = clock.now
    throttle = FailureThrottle(limit=20, window=60, clock=clock)
    _attempt(throttle)
    clock.now = start + 50
    for _ in range(19):
        _attempt(throttle)
    clock.now = start + 55
    assert _attempt(throttle) == 60
    clock.now = start + 60.5
    assert _attempt(throttle) == 55  # 54.5 s left, rounded up
    clock.now = start + 114.9
    assert _attempt(throttle) == 1
    clock.now = start + 115
    assert _attempt(throttle) is None


def test_retry_after_counts_down_in_whole_seconds_rounded_up() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=1, window=60, clock=clock)
    _attempt(throttle)
    crossing = clock.now
    assert _attempt(throttle) == 60
    waits = []
    for elapsed in (0.2, 1.0, 30.0, 30.5):
        clock.now = crossing + elapsed
        waits.append(_attempt(throttle))
    assert waits == [60, 59, 30, 30]


def test_attempts_during_the_block_neither_count_nor_extend_it() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        _attempt(throttle)
    crossing = clock.now
    assert _attempt(throttle) == 60
    for second in range(1, 60):
        clock.now = crossing + second
        assert _attempt(throttle) == 60 - second
    clock.now = crossing + 60
    assert [_attempt(throttle) for _ in range(3)] == [None] * 3


def test_after_the_block_the_address_has_a_whole_budget_again() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        _attempt(throttle)
    assert _attempt(throttle) == 60
    clock.now += 60
    assert [_attempt(throttle) for _ in range(4)] == [None, None, None, 60]


def test_failures_spread_wider_than_the_window_are_never_blocked() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    statuses = []
    for _ in range(10):
        statuses.append(_attempt(throttle))
        clock.now += 20.5  # at most 3 failures inside any 60 s
    assert statuses == [None] * 10


def test_other_addresses_are_not_affected() -> None:
    throttle = FailureThrottle(limit=1, window=60, clock=Clock())
    _attempt(throttle, "192.0.2.1")
    assert _attempt(throttle, "192.0.2.1") == 60
    assert _attempt(throttle, "192.0.2.2") is None


def test_memory_is_bounded_under_a_flood_of_addresses() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock, max_tracked=100)
    for n in range(250):
        clock.now += 0.001
        assert _attempt(throttle, f"10.0.{n // 256}.{n % 256}") is None
    assert throttle.tracked == 100
    # The least recently failing addresses were forgotten, the newest are still counted.
    assert throttle.blocked_for(ip_address("10.0.0.149")) is None
    for _ in range(2):
        _attempt(throttle, "10.0.0.249")
    assert _attempt(throttle, "10.0.0.249") == 60


def test_a_flood_of_new_addresses_cannot_lift_a_block() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=1, window=60, clock=clock, max_tracked=100)
    _attempt(throttle, IP)
    assert _attempt(throttle, IP) == 60
    crossing = clock.now
    for n in range(1000):
        clock.now += 0.009
        _attempt(throttle, f"10.1.{n // 256}.{n % 256}")
    assert throttle.tracked <= 100
    clock.now = crossing + 10
    assert _attempt(throttle, IP) == 50  # still blocked, 10 s of its minute gone


def test_when_every_tracked_address_is_blocked_a_new_one_is_refused_untracked() -> None:
    # Failing closed: a valid key never reaches the throttle, so this costs honest
    # clients nothing; failing open would hand a flood unthrottled guesses.
    clock = Clock()
    throttle = FailureThrottle(limit=1, window=60, clock=clock, max_tracked=10)
    for n in range(10):
        ip = ip_address(f"10.2.0.{n}")
        assert throttle.failed_attempt(ip) is None
        assert throttle.failed_attempt(ip) == 60
    assert throttle.failed_attempt(ip_address("10.2.1.1")) == 60
    assert throttle.tracked == 10
    clock.now += 60  # the blocks end: new addresses are counted again
    assert throttle.failed_attempt(ip_address("10.2.1.1")) is None


def test_cost_per_failure_does_not_grow_with_the_tracked_addresses() -> None:
    """Issue 18: at 100,000 tracked addresses each failure from a new IP cost ~108 ms (a
    scan of every address). Work per operation, counted and timed, must not depend on
    how many addresses are tracked: 1,000 new-address failures at 1,000 and at 100,000."""
    work, seconds = {}, {}
    for tracked in (1_000, 100_000):
        clock = Clock()
        throttle = FailureThrottle(limit=20, window=60, clock=clock, max_tracked=tracked)
        for n in range(tracked):
            throttle.record_failure(IPv4Address(n))
        assert throttle.tracked == tracked
        before = throttle.entries_examined
        started = time.perf_counter()
        for n in range(1_000):
            clock.now += 0.0001
            throttle.failed_attempt(IPv4Address(2**31 + n))  # a new address: the bound is reached
            throttle.failed_attempt(IPv4Address(tracked - 1 - n))  # a known one
        seconds[tracked] = time.perf_counter() - started
        work[tracked] = throttle.entries_examined - before
        assert throttle.tracked == tracked
    assert work[100_000] <= 2 * work[1_000], work
    assert work[100_000] <= 10 * 2_000  # a few entries per operation, not thousands
    assert seconds[100_000] < 10 * seconds[1_000] + 0.05, seconds


def test_expired_addresses_are_forgotten_without_a_scan() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=5, window=60, clock=clock)
    for n in range(1000):
        throttle.record_failure(ip_address(f"10.3.{n // 256}.{n % 256}"))
    clock.now += 61
    assert throttle.blocked_for(ip_address("192.0.2.200")) is None
    assert throttle.tracked == 0


def test_a_lifted_block_is_forgotten() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=1, window=60, clock=clock)
    _attempt(throttle)
    assert _attempt(throttle) == 60
    clock.now += 60
    assert throttle.blocked_for(IP) is None
    assert throttle.tracked == 0


# --- what one client is (red team 17): an IPv4 address, an IPv6 /64 ---------------------


@pytest.mark.parametrize(
    ("address", "client"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::", "2001:db8:1:3::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("::1", "::/64"),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(address: str, client: str) -> None:
    assert throttled_client(ip_address(address)) == client


def test_no_address_is_one_shared_client() -> None:
    assert throttled_client(None) == "unknown"


def test_two_addresses_of_one_ipv6_64_share_one_budget() -> None:
    throttle = FailureThrottle(limit=3, window=60, clock=Clock())
    # The lowest and the highest address of the /64, and one between.
    for address in ("2001:db8:1:2::", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:1::1"):
        assert _attempt(throttle, address) is None
    assert _attempt(throttle, "2001:db8:1:2::beef") == 60
    assert throttle.tracked == 1


def test_neighbouring_ipv6_64s_of_one_48_have_budgets_of_their_own() -> None:
    throttle = FailureThrottle(limit=1, window=60, clock=Clock())
    assert _attempt(throttle, "2001:db8:1:2:ffff:ffff:ffff:ffff") is None
    assert _attempt(throttle, "2001:db8:1:2::1") == 60
    # The next /64 up (one past the last address of 2001:db8:1:2::/64) and the one below.
    assert _attempt(throttle, "2001:db8:1:3::") is None
    assert _attempt(throttle, "2001:db8:1:1:ffff:ffff:ffff:ffff") is None


def test_ipv4_neighbours_keep_budgets_of_their_own() -> None:
    throttle = FailureThrottle(limit=1, window=60, clock=Clock())
    _attempt(throttle, "198.51.100.7")
    assert _attempt(throttle, "198.51.100.7") == 60
    assert _attempt(throttle, "198.51.100.6") is None
    assert _attempt(throttle, "198.51.100.8") is None


def test_an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address() -> None:
    throttle = FailureThrottle(limit=2, window=60, clock=Clock())
    assert _attempt(throttle, "198.51.100.7") is None
    assert _attempt(throttle, "::ffff:198.51.100.7") is None
    assert _attempt(throttle, "198.51.100.7") == 60
    assert _attempt(throttle, "::ffff:198.51.100.8") is None  # its neighbour: its own


def test_a_flood_of_addresses_in_one_64_is_one_tracked_client() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=20, window=60, clock=clock, max_tracked=10)
    for n in range(1000):
        clock.now += 0.001
        throttle.failed_attempt(ip_address(f"2001:db8:7:7::{n:x}"))
    assert throttle.tracked == 1
