"""Destroyed KEKs leave every process's cache at once (DESIGN.md "Deletion guarantees").

The transaction that destroys tenant KEK versions (rotation, tenant closure) sends
`NOTIFY datavault_kek_destroyed, '<tenant id>'`; PostgreSQL delivers it at commit to every
process LISTENing, and each drops that tenant's cached KEKs. A process whose LISTEN
connection drops may have missed a notification, so it flushes its whole cache and
reconnects. Without either, a cached KEK would stay in memory up to its 60 s expiry.
The payload is a tenant id: no key material, no subject.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import structlog

from vault.db.database import Connection
from vault.db.sql import Queries
from vault.services.kek_cache import KekCache
from vault.services.pg_listener import PgListener

log = structlog.get_logger("datavault.kek_invalidation")

CHANNEL: Final = "datavault_kek_destroyed"
Q = Queries("keys")


async def notify_kek_destroyed(conn: Connection, tenant_id: uuid.UUID) -> None:
    """In the transaction that destroys a tenant's KEK versions: every process drops its
    cached copies when that transaction commits."""
    await conn.execute(Q.notify_kek_destroyed, str(tenant_id))


class KekInvalidationListener:
    def __init__(self, database_url: str, cache: KekCache) -> None:
        self._cache = cache
        # Anything destroyed while nobody listened: flush once (re)connected, and when
        # the connection drops.
        self._listener = PgListener(
            database_url, [CHANNEL], self._on_notify,
            name="kek-invalidation", unavailable_event="kek_listener_unavailable",
            on_connected=cache.clear, on_lost=cache.clear,
        )  # fmt: skip
        self.connected = self._listener.connected

    def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            tenant_id = uuid.UUID(str(payload))
        except ValueError:
            self._cache.clear()  # not ours to parse: be safe
            return
        self._cache.drop(tenant_id)
