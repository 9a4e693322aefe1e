"""A KEK destroyed in one process leaves every other process's cache at once (NOTIFY), a
process that lost its LISTEN connection flushes its cache, and a destroyed KEK is never
used from a cache (DESIGN.md "Deletion guarantees")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest

from tests.support import Tenant, make_tenant
from vault.config import Settings
from vault.errors import KeyDestroyed
from vault.runtime import OperatorContext, operator_context
from vault.services.holds import PgHoldCheck
from vault.services.kek_invalidation import KekInvalidationListener
from vault.services.key_rotation import rotate_tenant_kek
from vault.services.keyring import KeyRing


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@asynccontextmanager
async def _process_with_cached_kek(
    settings: Settings, tenant: Tenant
) -> AsyncIterator[tuple[OperatorContext, KeyRing, KekInvalidationListener]]:
    """ "Here": a process with its own key ring and a connected listener, holding the
    tenant's KEK version 1 in its cache."""
    url = settings.database_url or ""
    async with operator_context(settings, url) as here:
        ring = KeyRing(here.root, PgHoldCheck())
        listener = KekInvalidationListener(url, ring.keks)
        listener.start()
        try:
            await asyncio.wait_for(listener.connected.wait(), 10)
            async with here.db.tenant_tx(tenant.id) as conn:
                await ring.kek(conn, tenant.id, 1)
            assert ring.keks.get(tenant.id, 1) is not None
            yield here, ring, listener
        finally:
            await listener.stop()


def test_rotation_elsewhere_drops_the_cached_kek_here_at_once(private_vault: Settings) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)

    async def run() -> None:
        async with _process_with_cached_kek(private_vault, tenant) as (here, ring, _):
            async with operator_context(private_vault, url) as elsewhere:
                await rotate_tenant_kek(elsewhere.db, elsewhere.keyring, elsewhere.root, tenant.id)
            took = await _until(lambda: ring.keks.get(tenant.id, 1) is None)
            assert took < 5  # the cache's own expiry would take 60 s
            # And the destroyed version is refused even if something cached it again.
            async with here.db.tenant_tx(tenant.id) as conn:
                with pytest.raises(KeyDestroyed):
                    await ring.kek(conn, tenant.id, 1)

    asyncio.run(run())


def test_a_lost_listen_connection_flushes_the_cache_and_reconnects(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)

    async def run() -> None:
        async with _process_with_cached_kek(private_vault, tenant) as (_, ring, listener):
            owner = await asyncpg.connect(url)
            try:
                await owner.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            finally:
                await owner.close()
            await _until(lambda: len(ring.keks) == 0)
            await _until(lambda: listener.connected.is_set(), timeout=10)

    asyncio.run(run())
