from vault.domain.throttle import FailureThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limit_failures_are_allowed_and_the_next_is_throttled() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=3, window=60, clock=clock)
    for _ in range(2):
        throttle.record_failure("192.0.2.1")
        assert throttle.retry_after("192.0.2.1") is None
    throttle.record_failure("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 60


def test_throttle_lifts_when_the_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=2, window=60, clock=clock)
    throttle.record_failure("192.0.2.1")
    clock.now += 30
    throttle.record_failure("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 30
    clock.now += 30.5
    assert throttle.retry_after("192.0.2.1") is None


def test_other_addresses_are_not_affected() -> None:
    throttle = FailureThrottle(limit=1, window=60, clock=Clock())
    throttle.record_failure("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is not None
    assert throttle.retry_after("192.0.2.2") is None


def test_memory_is_bounded_under_a_flood_of_addresses() -> None:
    clock = Clock()
    throttle = FailureThrottle(limit=5, window=60, clock=clock)
    throttle.MAX_TRACKED_ADDRESSES = 100
    for n in range(250):
        clock.now += 0.001
        throttle.record_failure(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._failures) <= 100
