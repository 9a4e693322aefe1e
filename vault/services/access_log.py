"""The access log: every request, hash-chained per tenant, written by group commit.

A request's row must be durable before its answer completes (no unlogged access), yet
requests must not queue behind one INSERT each. So rows go to one writer task that
commits whatever has gathered in one transaction per tenant, and each request awaits
its own row's commit. Under load a batch forms while the previous one commits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime

import asyncpg
import structlog

from crypto.mac import keyed_hash
from crypto.secrets import SecretBytes
from vault.db.database import HOLD_REFUSED_SQLSTATE, Database
from vault.db.sql import Queries
from vault.errors import Unavailable
from vault.services.transfers import HELD_FOR_SECONDS

Q = Queries("access_log")
log = structlog.get_logger("datavault.access_log")

# Rows per transaction: bounds one commit's size and latency under a burst. A request's
# rows are never split across transactions: one whose answer listed a page's most
# subjects (a listing's limit, 500) may be a transaction of its own of 501 rows.
MAX_BATCH_ROWS = 500
# Batches sent before the first of them has committed: overlaps one batch's round trip
# and commit with the next one's; more would only queue on the chain head's row lock.
MAX_BATCHES_IN_FLIGHT = 2
# How long stopping waits for requests still finishing (those the drain's end cancelled:
# they log themselves as they unwind) before it commits the last rows and stops.
STOP_WAIT_SECONDS = 5.0
# Client addresses whose keyed hash is kept (AccessLogWriter.ip_hash): a player seeking
# sends hundreds of requests from one address. Emptied when full.
IP_HASHES_KEPT = 1024


@dataclass(frozen=True)
class AccessEntry:
    tenant_id: uuid.UUID
    at: datetime
    request_id: str
    method: str
    route: str
    status: int
    ip: str | None = None
    api_key_id: uuid.UUID | None = None
    key_prefix: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    subject_ref_hash: bytes | None = None
    artefact_id: uuid.UUID | None = None
    # False when the key was named but refused (allowed CIDRs): logged, but not a "use".
    key_authenticated: bool = False
    # A read answered in one message whose holds on these data keys committed without
    # their own WAL flush: the row's commit confirms them (migration 0035), and the
    # answer goes out only after it. Not a column of the log.
    held_by_transfer: uuid.UUID | None = None
    held_keys: tuple[uuid.UUID, ...] = ()
    # The other subjects whose data the answer carried (a listing across subjects,
    # vault/http/listed_subjects.py): one further row each, committed with this one in
    # the same statement, so the request is found under every one of them.
    also_under: tuple[bytes, ...] = ()

    @property
    def rows(self) -> int:
        return 1 + len(self.also_under)

    def subject_rows(self) -> list[AccessEntry]:
        """The further rows: the request's time, id, key, address, method, route and
        status, one subject each, no artefact and 0 bytes (the request's own row counts
        what moved)."""
        return [
            replace(
                self,
                bytes_in=0,
                bytes_out=0,
                subject_ref_hash=ref_hash,
                artefact_id=None,
                held_by_transfer=None,
                held_keys=(),
                also_under=(),
            )
            for ref_hash in self.also_under
        ]


@dataclass
class _Pending:
    entry: AccessEntry
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True)
class _TenantBatch:
    """One tenant's rows of a batch, as the append statement's columns."""

    tenant_id: uuid.UUID
    rows: list[_Pending]
    columns: list[list[object]]
    last_use: list[tuple[uuid.UUID, tuple[datetime, str | None]]]
    holds: list[tuple[uuid.UUID, uuid.UUID]]  # (transfer, data key), confirmed


class AccessLogWriter:
    def __init__(self, db: Database, ip_key: SecretBytes) -> None:
        self._db = db
        self._ip_key = ip_key
        self._ip_hashes: dict[str | None, bytes] = {}
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Requests that have yet to write their row (AccessLogMiddleware): stopping waits
        # for them, so a request cut by the shutdown is still logged.
        self._open_requests = 0
        self._none_open = asyncio.Event()
        self._none_open.set()
        # The last commit failed: writes are refused before they run (middleware), so
        # none commits its change while its own row could not be (no unlogged access).
        self.failing = False

    def ip_hash(self, ip: str | None) -> bytes:
        # An HMAC per row was ~1 % of a seek's CPU (issue 19, sixth round); the key is
        # this process's for its life, so an address's hash never changes here.
        known = self._ip_hashes.get(ip)
        if known is None:
            if len(self._ip_hashes) >= IP_HASHES_KEPT:
                self._ip_hashes.clear()
            known = self._ip_hashes[ip] = keyed_hash(self._ip_key, (ip or "").encode())
        return known

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-log-writer")

    def request_started(self) -> None:
        self._open_requests += 1
        self._none_open.clear()

    def request_ended(self) -> None:
        self._open_requests -= 1
        if self._open_requests <= 0:
            self._none_open.set()

    async def stop(self) -> None:
        """Wait (up to STOP_WAIT_SECONDS) for requests still unwinding to queue their
        rows, commit what is queued, then stop."""
        with suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT_SECONDS):
                await self._none_open.wait()
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def record(self, entry: AccessEntry) -> None:
        """Return once the row is committed; raise Unavailable if it could not be."""
        await asyncio.shield(self.submit(entry))

    def submit(self, entry: AccessEntry) -> asyncio.Future[None]:
        """Queue the row and return at once: the future is done once the row is
        committed (Unavailable if it could not be). For a row committed while its request
        goes on working (vault/http/middleware.py `log_answer_ahead`)."""
        if self._task is None or self._task.done():
            raise Unavailable("access log is not running")
        pending = _Pending(entry)
        self._pending.append(pending)
        self._wake.set()
        return pending.done

    async def _run(self) -> None:
        # Up to MAX_BATCHES_IN_FLIGHT batches are sent at once, so a batch's round trip
        # and commit overlap the next one's. The database chains each onto the head it
        # finds under the head's row lock (migration 0015), so batches from this process
        # and from other replicas take turns there and never conflict.
        in_flight: set[asyncio.Task[None]] = set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                # Batches that have committed are no longer in flight: without this, a
                # batch after two others waited in `asyncio.wait` on tasks long done,
                # two turns of the event loop before its statement was sent.
                in_flight = {task for task in in_flight if not task.done()}
                if len(in_flight) >= MAX_BATCHES_IN_FLIGHT:
                    _, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                taken = _batch_size(self._pending)
                batch, self._pending = self._pending[:taken], self._pending[taken:]
                task = asyncio.create_task(self._commit(self._by_tenant(batch)))
                in_flight.add(task)
            if self._closing:
                await asyncio.gather(*in_flight)
                return

    def _by_tenant(self, batch: list[_Pending]) -> list[_TenantBatch]:
        by_tenant: dict[uuid.UUID, list[_Pending]] = defaultdict(list)
        for pending in batch:
            by_tenant[pending.entry.tenant_id].append(pending)
        return [self._columns(tenant_id, rows) for tenant_id, rows in by_tenant.items()]

    async def _commit(self, groups: list[_TenantBatch]) -> None:
        for group in groups:
            try:
                await self._append(group)
            except asyncpg.PostgresError as exc:
                # Only a batch that confirms holds can be refused for one (red team 16).
                if group.holds and getattr(exc, "sqlstate", None) == HOLD_REFUSED_SQLSTATE:
                    await self._hold_refused(group)
                else:
                    self._failed(group, exc)
            except Exception as exc:
                self._failed(group, exc)
            else:
                self._committed(group)

    async def _append(self, group: _TenantBatch) -> None:
        last_use = (
            [key_id for key_id, _ in group.last_use],
            [at for _, (at, _) in group.last_use],
            [ip for _, (_, ip) in group.last_use],
        )
        if group.holds:
            await self._db.tenant_fetchrow(
                group.tenant_id, Q.append_holding, *group.columns, *last_use,
                [transfer for transfer, _ in group.holds],
                [key for _, key in group.holds], HELD_FOR_SECONDS,
            )  # fmt: skip
        else:
            await self._db.tenant_fetchrow(group.tenant_id, Q.append, *group.columns, *last_use)

    async def _hold_refused(self, group: _TenantBatch) -> None:
        """A read's hold could not be confirmed: it was lost (a database crash) and its
        key is destroyed since (DV410, migration 0035). That is the read's own refusal,
        not the log failing: the batch's other requests (whose changes may have
        committed) are written one request at a time, in order, so that only the read is
        refused; the read's row is written without the hold, stating the 503 it is
        answered (red team 14: the whole batch failed, and a committed write was
        answered 503 with no row)."""
        if len(group.rows) > 1:
            for pending in group.rows:
                await self._commit([self._columns(group.tenant_id, [pending])])
            return
        (pending,) = group.rows
        refused = replace(
            pending.entry, status=503, bytes_out=0, held_by_transfer=None, held_keys=(),
            also_under=(),
        )  # fmt: skip
        try:
            await self._append(self._columns(group.tenant_id, [_Pending(refused)]))
        except Exception as exc:
            self._failed(group, exc)
            return
        self.failing = False
        if not pending.done.done():
            pending.done.set_exception(Unavailable("the read's data key is destroyed"))

    def _committed(self, group: _TenantBatch) -> None:
        self.failing = False
        for pending in group.rows:
            if not pending.done.done():
                pending.done.set_result(None)

    def _failed(self, group: _TenantBatch, exc: Exception) -> None:
        self.failing = True
        log.error("access_log_write_failed", error_type=type(exc).__name__)
        for pending in group.rows:
            if not pending.done.done():
                pending.done.set_exception(Unavailable("access log unavailable"))

    def _columns(self, tenant_id: uuid.UUID, rows: list[_Pending]) -> _TenantBatch:
        """The rows as the append statement's columns (the database numbers and chains
        them), and the last use of each key that authenticated."""
        columns: list[list[object]] = [[] for _ in range(13)]
        last_use: dict[uuid.UUID, tuple[datetime, str | None]] = {}
        holds: list[tuple[uuid.UUID, uuid.UUID]] = []
        for pending in rows:
            request = pending.entry
            if request.held_by_transfer is not None:
                holds.extend((request.held_by_transfer, key) for key in request.held_keys)
            ip_hash = self.ip_hash(request.ip)
            for entry in (request, *request.subject_rows()):
                values = (
                    entry.at, entry.request_id, entry.api_key_id, entry.key_prefix, entry.ip,
                    ip_hash, entry.method, entry.route, entry.status, entry.bytes_in,
                    entry.bytes_out, entry.subject_ref_hash, entry.artefact_id,
                )  # fmt: skip
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
            if request.api_key_id is not None and request.key_authenticated:
                last_use[request.api_key_id] = (request.at, request.ip)
        return _TenantBatch(tenant_id, rows, columns, list(last_use.items()), holds)


def _batch_size(pending: list[_Pending]) -> int:
    """How many of the queued requests the next batch takes: as many as fit in
    MAX_BATCH_ROWS rows, at least one (whose rows may be more)."""
    rows = pending[0].entry.rows
    taken = 1
    while taken < len(pending) and rows + pending[taken].entry.rows <= MAX_BATCH_ROWS:
        rows += pending[taken].entry.rows
        taken += 1
    return taken
