"""Transfers (downloads, range reads, exports, uploads) hold keys only while those keys
live: DESIGN.md, Deletion guarantees, cuts a transfer within 60 s of its data key being
destroyed or of the API key that started it being revoked, by the clock, whether or not
the client is reading.

A `TransferLease` is what one transfer holds: the API key that started it and the ids of
the data keys it has open, plus the streams that decrypt under them. `watch_lease`
confirms the lease every few seconds, by the clock, and returns why the transfer must be
cut once it fails or cannot be confirmed in time; the HTTP layer (vault/http/transfers.py)
then cancels the request and drops its connection, and `TransferLease.close` closes the
decrypting streams so the key leaves memory with them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager, suppress

import structlog

from vault.db.database import Database
from vault.db.sql import Queries
from vault.errors import KeyDestroyed, KeyNoLongerLive, Unavailable, VaultError
from vault.services.keyring import DataKey

Q = Queries("transfers")
log = structlog.get_logger("datavault.transfers")

# DESIGN.md: no process holds a destroyed key, or serves a revoked API key's transfer,
# longer than 60 s. A transfer whose keys could not be confirmed live for this long is
# cut as if they were gone; the 10 s left are for the cut itself (cancelling the
# request, closing its streams, an event loop busy with other work).
UNCONFIRMED_LIMIT_SECONDS = 50.0
# How often a transfer confirms its keys: well inside the limit, so a check that fails
# (database restarting, pool busy) is retried several times before the limit cuts, and a
# destroyed key or revoked API key is noticed within about this long. One short query
# per transfer every 10 s.
TRANSFER_RECHECK_SECONDS = 10.0


class TransferLease:
    """What one transfer holds while it runs. Keys are held by id only: the lease itself
    never keeps key bytes alive."""

    def __init__(self, db: Database, tenant_id: uuid.UUID, api_key_id: uuid.UUID) -> None:
        self._db = db
        self.tenant_id = tenant_id
        self.api_key_id = api_key_id
        self._data_keys: Counter[uuid.UUID] = Counter()
        self._streams: list[AsyncGenerator[bytes, None]] = []
        self.ended = False
        self.closed = False

    @contextmanager
    def holding(self, data_key: DataKey) -> Iterator[None]:
        """While the block runs, `data_key` is confirmed with the rest of the lease."""
        if data_key.subject_key.tenant_id != self.tenant_id:
            raise ValueError("a transfer holds keys of its own tenant only")
        self._data_keys[data_key.id] += 1
        try:
            yield
        finally:
            self._data_keys[data_key.id] -= 1
            if self._data_keys[data_key.id] <= 0:
                del self._data_keys[data_key.id]

    def stream(self, body: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """Register a stream that decrypts under the lease's keys, to be closed with it."""
        self._streams.append(body)
        return body

    def end(self) -> None:
        """The transfer's data has moved; what remains is decided by one statement that
        checks the API key itself (an upload's completion), so the clock no longer cuts."""
        self.ended = True

    async def confirm(self) -> None:
        """Raise KeyNoLongerLive (the API key revoked or expired, its tenant closed) or
        KeyDestroyed (a data key, or a key above it, destroyed); else return."""
        held = sorted(self._data_keys)
        async with self._db.tenant_tx(self.tenant_id) as conn:
            # dv_require_live_key raises for a revoked key or a closed tenant
            # (KeyNoLongerLive, via tenant_tx); the row says the rest.
            row = await conn.fetchrow(Q.still_live, self.tenant_id, self.api_key_id, held)
        assert row is not None
        if not row["api_key_unexpired"]:
            raise KeyNoLongerLive("the API key that started this transfer expired")
        if row["data_keys_live"] != len(held):
            raise KeyDestroyed("the data key was destroyed during the transfer")

    async def close(self) -> None:
        """Close every registered stream, so the decrypting generators (and the keys in
        their frames) go now rather than whenever they are collected. A stream still
        running (an export's ZIP writer thread finishing one piece) sees `closed` and
        stops at its next piece."""
        self.closed = True
        streams, self._streams = self._streams, []
        for body in reversed(streams):
            if getattr(body, "ag_running", False):
                continue
            with suppress(Exception):
                await body.aclose()


async def watch_lease(
    lease: TransferLease, *, every: float, limit: float = UNCONFIRMED_LIMIT_SECONDS
) -> VaultError | None:
    """Confirm `lease` every `every` seconds, by the clock. Returns why the transfer must
    be cut: KeyNoLongerLive, KeyDestroyed, or Unavailable once nothing confirmed the keys
    for `limit` seconds (checks failing or hanging); None once the lease has ended.
    Cancel it when the transfer ends."""
    loop = asyncio.get_running_loop()
    confirmed = loop.time()
    while True:
        deadline = confirmed + limit
        await asyncio.sleep(max(0.0, min(every, deadline - loop.time())))
        if lease.ended:
            return None
        # What a successful check proves holds from before its query's snapshot.
        started = loop.time()
        try:
            async with asyncio.timeout_at(deadline):
                await lease.confirm()
        except (KeyNoLongerLive, KeyDestroyed) as refused:
            # Without its traceback: the frames it names must not outlive the cut.
            return None if lease.ended else refused.with_traceback(None)
        except Exception as exc:
            # Including a check still running at the deadline (TimeoutError).
            log.warning("transfer_check_failed", error_type=type(exc).__name__)
            if loop.time() >= deadline:
                return None if lease.ended else Unavailable("the transfer could not be confirmed")
            continue
        confirmed = started
