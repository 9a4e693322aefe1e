"""The KEK cache keeps an unwrapped tenant KEK for at most 60 s (DESIGN.md), and an
expired one leaves memory even if nobody asks for it again."""

from __future__ import annotations

import uuid

from crypto.secrets import SecretBytes
from vault.services.kek_cache import KEK_CACHE_SECONDS, KekCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_kek_is_served_until_60_seconds_and_not_after() -> None:
    clock = FakeClock()
    cache = KekCache(clock=clock)
    tenant = uuid.uuid4()
    cache.put(tenant, 1, SecretBytes(b"k" * 32))
    clock.now += KEK_CACHE_SECONDS - 0.001
    assert cache.get(tenant, 1) is not None
    clock.now += 0.001
    assert cache.get(tenant, 1) is None


def test_expired_keks_of_tenants_nobody_asks_for_leave_memory() -> None:
    clock = FakeClock()
    cache = KekCache(clock=clock)
    closed, active = uuid.uuid4(), uuid.uuid4()
    cache.put(closed, 1, SecretBytes(b"c" * 32))
    clock.now += KEK_CACHE_SECONDS
    cache.put(active, 1, SecretBytes(b"a" * 32))  # any later use sweeps the cache
    assert len(cache) == 1
    clock.now += KEK_CACHE_SECONDS
    cache.evict_expired()  # and so does the eviction job, every 10 s, in every process
    assert len(cache) == 0


def test_drop_removes_a_tenants_versions_at_once() -> None:
    cache = KekCache(clock=FakeClock())
    tenant = uuid.uuid4()
    cache.put(tenant, 1, SecretBytes(b"1" * 32))
    cache.put(tenant, 2, SecretBytes(b"2" * 32))
    cache.drop(tenant, [1])
    assert cache.get(tenant, 1) is None and cache.get(tenant, 2) is not None
