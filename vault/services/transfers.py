"""Transfers (downloads, range reads, exports, playback streams, uploads, and every answer
carrying data decrypted with a subject's key: record values, artefact metadata, listings,
disclosures) hold keys only while those keys live and their caller may still read what
they stream: DESIGN.md, Deletion guarantees, cuts a transfer within 60 s of its data key
being destroyed or of the API key that started it being revoked, by the clock, whether
or not the client is reading; and a read runs on only while the read path would still
serve it (a subject restricted since, or an erasure that kept the artefact: compliance
scope only).

A `TransferLease` is what one transfer holds: the API key that started it, the ids of
the data keys it has open (each with the read it serves, if it is a read), plus the
streams that decrypt under them. `watch_lease` confirms the lease every few seconds, by
the clock, and returns why the transfer must be cut once it fails or cannot be confirmed
in time; the HTTP layer (vault/http/transfers.py) then cancels the request and drops its
connection, and `TransferLease.close` closes the decrypting streams so the key leaves
memory with them.

Which keys a transfer holds is also written to the database (transfer_keys, migration
0026), renewed with each confirmation and deleted on close: an erasure completes only
once no live transfer holds a key it shredded (erasures.sql `awaiting_ledger`), whichever
process runs the transfer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import asyncpg
import structlog

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.errors import (
    Forbidden,
    KeyDestroyed,
    KeyNoLongerLive,
    NotFound,
    Unavailable,
    VaultError,
)
from vault.services.keyring import DataKey
from vault.services.subjects import SubjectAccess, check_readable, subject_from_columns

Q = Queries("transfers")
S = Queries("subjects")
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
# How long a confirmation lets the database count a key as held (transfer_keys): the
# longest a process can go on holding it unconfirmed, the limit and the cut's 10 s.
HELD_FOR_SECONDS = UNCONFIRMED_LIMIT_SECONDS + 10.0
# How often a read looks again for what changed between finding it and holding its key
# (a record version replaced, an artefact of a listing shredded; something replacing it
# that often: the read fails, 410).
HELD_READ_ATTEMPTS = 5
# Why a confirmation cuts a transfer (anything else is a check that failed, retried).
REFUSALS = (KeyNoLongerLive, KeyDestroyed, Forbidden, NotFound)


@dataclass(frozen=True)
class SubjectRead:
    """The read a held data key serves: whose data (the subject by its reference's keyed
    hash), which generation it was written in, and what the caller may read. Confirmed
    with the read path's own rule (subjects.py `check_readable`)."""

    ref_hash: bytes
    generation: int
    access: SubjectAccess


class TransferLease:
    """What one transfer holds while it runs. Keys are held by id only: the lease itself
    never keeps key bytes alive."""

    def __init__(
        self, db: Database, tenant_id: uuid.UUID, api_key_id: uuid.UUID,
        release_later: Callable[[uuid.UUID, uuid.UUID], bool] | None = None,
    ) -> None:  # fmt: skip
        self._db = db
        # Queues the release off the request path (TransferReleaser.release_later); False
        # or None: released here, one statement of its own.
        self._release_later = release_later
        self.id = uuid.uuid4()  # its rows in transfer_keys
        self.tenant_id = tenant_id
        self.api_key_id = api_key_id
        self._data_keys: Counter[uuid.UUID] = Counter()
        self._reads: dict[uuid.UUID, SubjectRead] = {}
        self._claimed = False  # any rows in transfer_keys to delete on close
        # Keys the statement that found them recorded as held (migration 0032).
        self._held_in_read: set[uuid.UUID] = set()
        # Of those, the ones whose hold committed without its own WAL flush (a read
        # answered in one message): its access-log row's commit confirms them.
        self._unflushed: set[uuid.UUID] = set()
        self._streams: list[AsyncGenerator[bytes, None]] = []
        # The access-log commit confirming the unflushed holds, while it runs.
        self._confirming: asyncio.Future[None] | None = None
        self.ended = False
        self.closed = False

    async def claim(self, data_key_id: uuid.UUID, conn: Connection | None = None) -> None:
        """Record in the database that this transfer holds `data_key_id`, before anything
        is decrypted under it: in `conn`'s transaction for a key it creates, else in one
        statement of its own that refuses a key destroyed since it was read
        (KeyDestroyed). The row lives until the lease closes, or expires by the clock."""
        self._claimed = True  # a row may be there whatever happens next
        if conn is None and data_key_id in self._held_in_read:
            return  # recorded by the read's own statement, still live then
        if conn is not None:
            await conn.execute(Q.hold_key, self.tenant_id, self.id, data_key_id, HELD_FOR_SECONDS)
            return
        held = await self._db.tenant_fetchrow(
            self.tenant_id, Q.hold_live_key, self.id, data_key_id, HELD_FOR_SECONDS
        )
        if held is None or not held[0]:
            raise KeyDestroyed("the data key was destroyed")

    def held_from_read(self, data_key_id: uuid.UUID, *, flushed: bool = True) -> None:
        """The statement that found the key recorded it as held by this transfer, in its
        own snapshot and only while it was live (artefacts.sql `read_held`): `claim`
        then sends nothing more for it. `flushed` False: that commit did not wait for
        the WAL flush (a read answered in one message), and the request's access-log
        commit, which its answer waits for, confirms it (`unflushed_holds`)."""
        self._claimed = True
        self._held_in_read.add(data_key_id)
        if not flushed:
            self._unflushed.add(data_key_id)

    @property
    def unflushed_holds(self) -> tuple[uuid.UUID, ...]:
        """The keys whose holds committed without their own WAL flush, while the lease is
        open: the access-log commit that precedes the answer confirms them (migration
        0035), and only confirms: they last until the answer is sent."""
        return () if self.closed else tuple(self._unflushed)

    def hold_until_closed(self, data_key_id: uuid.UUID, read: SubjectRead | None) -> None:
        """Count `data_key_id` as held, serving `read`, until the lease closes, not only
        while it decrypts: an answer decrypted whole (at most one message) waits in the
        process until it is sent, for as long as a client that stopped reading makes it
        wait, and its plaintext is as much the key's as a stream's next piece. So the
        watchdog goes on confirming the key and the read (and cuts the stalled send once
        either fails), and the hold in transfer_keys lasts until the transfer ends.
        `read` None: only the key is confirmed (a disclosure's description, which its
        readers may read whatever the subject's restriction, until the key is shredded)."""
        self._data_keys[data_key_id] += 1
        if read is not None:
            self._reads[data_key_id] = read

    async def hold_keys(
        self, reads: Mapping[uuid.UUID, SubjectRead | None], *, one_message: bool = True
    ) -> dict[uuid.UUID, asyncpg.Record]:
        """Hold the data keys an answer decrypts with (its keys, each with the read it
        serves, as `hold_until_closed`), from before anything is decrypted under them
        until the lease closes, in one statement however many there are (a listing: one
        key per item, many subjects' keys for a listing across subjects; migration
        0038). Returns the held keys' rows, with the columns KeyRing.open_data_key
        takes, read in the hold's own snapshot: a key missing from it was destroyed, and
        nothing may be decrypted under it. `one_message`: the answer goes out only after
        its access-log row's commit, which makes the holds durable (`unflushed_holds`);
        False (a stream) commits them with their own WAL flush."""
        if not reads:
            return {}
        self._claimed = True  # rows may be there whatever happens next
        rows = await self._db.tenant_fetch(
            self.tenant_id, Q.hold_keys, self.id, list(reads), HELD_FOR_SECONDS,
            not one_message,
        )  # fmt: skip
        held = {row["id"]: row for row in rows}
        for key_id in held:
            self.held_from_read(key_id, flushed=not one_message)
            self.hold_until_closed(key_id, reads[key_id])
        return held

    @contextmanager
    def holding(self, data_key: DataKey, read: SubjectRead | None = None) -> Iterator[None]:
        """While the block runs, `data_key` is confirmed with the rest of the lease, and
        so is `read`, the read it serves (None: a write)."""
        if data_key.subject_key.tenant_id != self.tenant_id:
            raise ValueError("a transfer holds keys of its own tenant only")
        key_id = data_key.id
        del data_key  # held by id: this frame must not keep the key bytes alive
        self._data_keys[key_id] += 1
        if read is not None:
            self._reads[key_id] = read
        try:
            yield
        finally:
            self._data_keys[key_id] -= 1
            if self._data_keys[key_id] <= 0:
                del self._data_keys[key_id]
                self._reads.pop(key_id, None)

    def stream(self, body: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """Register a stream that decrypts under the lease's keys, to be closed with it."""
        self._streams.append(body)
        return body

    def end(self) -> None:
        """The transfer's data has moved; what remains is decided by one statement that
        checks the API key itself (an upload's completion), so the clock no longer cuts."""
        self.ended = True

    async def confirm(self) -> None:
        """Raise KeyNoLongerLive (the API key revoked or expired, its tenant closed),
        KeyDestroyed (a data key, or a key above it, destroyed), or what the read path
        raises for a read it would no longer serve (Restricted: the subject restricted,
        or the artefact kept after an erasure, and the caller is not compliance); else
        return, the held keys' rows in transfer_keys renewed."""
        held = sorted(self._data_keys)
        reads = list(self._reads.values())
        self._claimed = self._claimed or bool(held)  # the check writes their rows too
        async with self._db.tenant_tx(self.tenant_id) as conn:
            await conn.execute(Q.behind_barrier, self.tenant_id)
            # dv_require_live_key raises for a revoked key or a closed tenant
            # (KeyNoLongerLive, via tenant_tx); the row says the rest.
            row = await conn.fetchrow(
                Q.still_live, self.tenant_id, self.api_key_id, held, self.id, HELD_FOR_SECONDS
            )
            # Each subject read as the read path reads it (dv_subject), once.
            subjects = {
                ref_hash: await conn.fetchrow(S.find, self.tenant_id, ref_hash)
                for ref_hash in {read.ref_hash for read in reads}
            }
        assert row is not None
        if not row["api_key_unexpired"]:
            raise KeyNoLongerLive("the API key that started this transfer expired")
        if row["data_keys_live"] != len(held):
            raise KeyDestroyed("the data key was destroyed during the transfer")
        for read in reads:
            found = subjects[read.ref_hash]
            if found is None:
                raise NotFound("no such subject")
            check_readable(
                subject_from_columns(self.tenant_id, found), read.access, read.generation
            )

    def confirmed_by(self, commit: asyncio.Future[None]) -> None:
        """`commit` (the request's access-log row) confirms the unflushed holds, and takes
        one again while its key is live if it finds it gone (migration 0035): `release`
        waits for it, or a transfer cut while it ran would release its rows first and
        the commit write one back, left to expire (60 s an erasure's completion waits)."""
        self._confirming = commit

    async def release(self) -> None:
        """Delete the transfer's rows in transfer_keys: it holds no key any more. Failing
        (the database unreachable), they expire by the clock."""
        if not self._claimed:
            return
        confirming, self._confirming = self._confirming, None
        if confirming is not None and not confirming.done():
            with suppress(Exception):  # failed: it wrote nothing
                await asyncio.shield(confirming)
        if self._release_later is not None and self._release_later(self.tenant_id, self.id):
            return
        try:
            await self._db.tenant_fetch(self.tenant_id, Q.release, self.id)
        except Exception as exc:
            log.warning("transfer_release_failed", error_type=type(exc).__name__)

    async def close(self, *, release: bool = True) -> None:
        """Close every registered stream, so the decrypting generators (and the keys in
        their frames) go now rather than whenever they are collected. A stream still
        running (an export's ZIP writer thread finishing one piece) sees `closed` and
        stops at its next piece. Then release the rows in transfer_keys, unless the
        caller does that itself (`release` False)."""
        self.closed = True
        streams, self._streams = self._streams, []
        for body in reversed(streams):
            if getattr(body, "ag_running", False):
                continue
            with suppress(Exception):
                await body.aclose()
        if release:
            await self.release()


async def watch_lease(
    lease: TransferLease,
    *,
    every: float,
    limit: float = UNCONFIRMED_LIMIT_SECONDS,
    started: float | None = None,
) -> VaultError | None:
    """Confirm `lease` every `every` seconds, by the clock. Returns why the transfer must
    be cut: KeyNoLongerLive, KeyDestroyed, Restricted (or NotFound) for a read the read
    path would refuse now, or Unavailable once nothing confirmed the keys
    for `limit` seconds (checks failing or hanging); None once the lease has ended.
    Cancel it when the transfer ends.

    `started`: the loop time the transfer began, for a watch begun when its first check
    is due (vault/http/transfers.py starts it then: most transfers end long before),
    which then checks at once; the limit counts from `started`."""
    loop = asyncio.get_running_loop()
    confirmed = loop.time() if started is None else started
    check_now = started is not None
    while True:
        deadline = confirmed + limit
        if not check_now:
            await asyncio.sleep(max(0.0, min(every, deadline - loop.time())))
        check_now = False
        if lease.ended:
            return None
        # What a successful check proves holds from before its query's snapshot.
        started = loop.time()
        try:
            async with asyncio.timeout_at(deadline):
                await lease.confirm()
        except REFUSALS as refused:
            # Without its traceback: the frames it names must not outlive the cut.
            return None if lease.ended else refused.with_traceback(None)
        except Exception as exc:
            # Including a check still running at the deadline (TimeoutError).
            log.warning("transfer_check_failed", error_type=type(exc).__name__)
            if loop.time() >= deadline:
                return None if lease.ended else Unavailable("the transfer could not be confirmed")
            continue
        confirmed = started


async def delete_expired_holds(db: Database, tenant_id: uuid.UUID) -> int:
    """transfer_keys rows past held_until (a process that died holding a key): hygiene
    for the sweeper, since completion ignores them already."""
    async with db.tenant_tx(tenant_id) as conn:
        status = await conn.execute(Q.delete_expired, tenant_id)
    return int(status.split()[-1])
