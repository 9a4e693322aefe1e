"""The failed-authentication throttle against API.md: "More than 20 requests with a
missing or wrong key from one IP within a minute: further ones from that IP get 429 with
`Retry-After` for 60 s". `blocked_for` is asked for each failing attempt before it is
counted, as vault/http/auth.py does; None means the attempt gets its 401."""

from __future__ import annotations

from vault.domain.throttle import FailureThrottle

IP = "192.0.2.1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _attempt(throttle: FailureThrottle, ip: str = IP) -> int | None:
    """One failing attempt: its Retry-After if refused (429), else None (401, counted)."""
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
    throttle = FailureThrottle(limit=1, window=60, clock=clock)
    throttle.MAX_TRACKED_ADDRESSES = 100
    for n in range(250):
        clock.now += 0.001
        ip = f"10.0.{n // 256}.{n % 256}"
        _attempt(throttle, ip)
        _attempt(throttle, ip)  # blocked addresses are tracked too
    assert len(throttle._addresses) <= 100
    # The newest address is still blocked: eviction forgot the oldest ones.
    assert throttle.blocked_for("10.0.0.249") is not None


def test_a_lifted_block_is_forgotten() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=1, window=60, clock=clock)
    _attempt(throttle)
    assert _attempt(throttle) == 60
    clock.now += 60
    assert throttle.blocked_for(IP) is None
    assert throttle._addresses == {}
