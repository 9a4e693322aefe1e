"""Releasing ended transfers' key holds off the request path, in batches.

A transfer holds its data keys in transfer_keys until its answer has left the process
(vault/http/transfers.py); then its rows go. Deleting them is no part of the answer, so
the request does not wait for it: `release_later` queues the transfer and returns, and
one task deletes whatever has gathered, one statement per tenant (transfers.sql
`release_many`, committed without waiting for the WAL flush). The first release queued
waits RELEASE_GATHER_SECONDS for others to join its statement: a player seeking ends a
transfer every few milliseconds, and a statement per seek was a third round trip (and
transaction) per read beside the read statement and the access-log commit (issue 19,
goal 2). An erasure's completion waits for these rows, so the wait is short: it adds at
most that much to a completion that waits on a transfer just ended. A release that fails
(the database unreachable), or one queued after `stop`, leaves rows that expire by the
clock (HELD_FOR_SECONDS), as a process that died would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from contextlib import suppress

import structlog

from vault.db.database import Database
from vault.db.sql import Queries

Q = Queries("transfers")
log = structlog.get_logger("datavault.transfers")

# How long the first queued release waits for more to share its statement. At one
# seeking client (a read every 1-3 ms) that is one statement per ten reads or so; an
# erasure's completion is due within a second (issue 19 goal 4), so this stays small.
RELEASE_GATHER_SECONDS = 0.02


class TransferReleaser:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._queued: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="transfer-releases")

    def release_later(self, tenant_id: uuid.UUID, transfer_id: uuid.UUID) -> bool:
        """Queue the transfer's release; False when the releaser is not running (the
        caller then releases on its own)."""
        if self._task is None or self._task.done() or self._stopping:
            return False
        self._queued[tenant_id].append(transfer_id)
        self._wake.set()
        return True

    async def stop(self) -> None:
        """Release what is queued (without waiting to gather more), then stop."""
        self._stopping = True
        self._wake.set()
        self._stop_requested.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._stopping:
                # Gather: the releases queued meanwhile share the statement. `stop` ends
                # the wait at once (the drain must not wait on it).
                with suppress(TimeoutError):
                    async with asyncio.timeout(RELEASE_GATHER_SECONDS):
                        await self._stop_requested.wait()
            self._wake.clear()
            while self._queued:
                batch, self._queued = self._queued, defaultdict(list)
                for tenant_id, transfers in batch.items():
                    await self._release(tenant_id, transfers)
            if self._stopping:
                return

    async def _release(self, tenant_id: uuid.UUID, transfers: list[uuid.UUID]) -> None:
        try:
            await self._db.tenant_fetch(tenant_id, Q.release_many, transfers)
        except Exception as exc:
            log.warning("transfer_release_failed", error_type=type(exc).__name__)
