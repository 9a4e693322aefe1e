"""Destroyed KEKs leave every process's cache at once (DESIGN.md "Deletion guarantees").

The transaction that destroys tenant KEK versions (rotation, tenant closure) sends
`NOTIFY datavault_kek_destroyed, '<tenant id>'`; PostgreSQL delivers it at commit to every
process LISTENing, and each drops that tenant's cached KEKs. A process whose LISTEN
connection drops may have missed a notification, so it flushes its whole cache and
reconnects. Without either, a cached KEK would stay in memory up to its 60 s expiry.
The payload is a tenant id: no key material, no subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Final

import asyncpg
import structlog

from vault.db.database import Connection
from vault.db.sql import Queries
from vault.services.kek_cache import KekCache

log = structlog.get_logger("datavault.kek_invalidation")

CHANNEL: Final = "datavault_kek_destroyed"
_RECONNECT_SECONDS: Final = 1.0
Q = Queries("keys")


async def notify_kek_destroyed(conn: Connection, tenant_id: uuid.UUID) -> None:
    """In the transaction that destroys a tenant's KEK versions: every process drops its
    cached copies when that transaction commits."""
    await conn.execute(Q.notify_kek_destroyed, str(tenant_id))


class KekInvalidationListener:
    def __init__(self, database_url: str, cache: KekCache) -> None:
        self._url = database_url
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kek-invalidation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url)
                self._lost.clear()
                conn.add_termination_listener(self._on_terminated)
                await conn.add_listener(CHANNEL, self._on_notify)
                # Anything destroyed while nobody listened: flush once connected too.
                self._cache.clear()
                self.connected.set()
                await self._lost.wait()
            except Exception as exc:  # the listener must outlive any failure: retry
                log.warning("kek_listener_unavailable", error_type=type(exc).__name__)
            finally:
                self.connected.clear()
                self._cache.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(_RECONNECT_SECONDS)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            tenant_id = uuid.UUID(str(payload))
        except ValueError:
            self._cache.clear()  # not ours to parse: be safe
            return
        self._cache.drop(tenant_id)

    def _on_terminated(self, _conn: Any) -> None:
        self._lost.set()
