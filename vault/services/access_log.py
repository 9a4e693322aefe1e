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
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog

from crypto.mac import keyed_hash
from crypto.secrets import SecretBytes
from vault.db.database import Database, TenantFetchRow
from vault.db.sql import Queries
from vault.domain.access_chain import GENESIS, ChainedFields, row_hash
from vault.errors import Unavailable

Q = Queries("access_log")
log = structlog.get_logger("datavault.access_log")

# Rows per transaction: bounds one commit's size and latency under a burst.
MAX_BATCH_ROWS = 500
# Batches sent before the first of them has committed: overlaps one batch's round trip
# and commit with the next one's; more would only queue on the chain head's row lock.
MAX_BATCHES_IN_FLIGHT = 2


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


@dataclass
class _Pending:
    entry: AccessEntry
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True)
class _Chained:
    head: tuple[int, bytes]  # the head the rows were chained after
    columns: list[list[object]]
    new_head: tuple[int, bytes]
    last_use: list[tuple[uuid.UUID, tuple[datetime, str | None]]]


@dataclass(frozen=True)
class _TenantBatch:
    tenant_id: uuid.UUID
    rows: list[_Pending]
    chained: _Chained | None


class AccessLogWriter:
    def __init__(self, db: Database, ip_key: SecretBytes) -> None:
        self._db = db
        self._ip_key = ip_key
        self._pending: list[_Pending] = []
        # The chain head this process last wrote, per tenant: the next batch assumes it
        # and the database checks it (dv_access_log_append).
        self._heads: dict[uuid.UUID, tuple[int, bytes]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The last commit failed: writes are refused before they run (middleware), so
        # none commits its change while its own row could not be (no unlogged access).
        self.failing = False

    def ip_hash(self, ip: str | None) -> bytes:
        return keyed_hash(self._ip_key, (ip or "").encode())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-log-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def record(self, entry: AccessEntry) -> None:
        """Return once the row is committed; raise Unavailable if it could not be."""
        if self._task is None or self._task.done():
            raise Unavailable("access log is not running")
        pending = _Pending(entry)
        self._pending.append(pending)
        self._wake.set()
        await asyncio.shield(pending.done)

    async def _run(self) -> None:
        # Batches are chained here, in order, each on the head the previous one will
        # leave; up to MAX_BATCHES_IN_FLIGHT are then sent at once, so a batch's round
        # trip and commit overlap the next one's. The database applies them in chain
        # order (each checks the head it expects under the head's row lock).
        in_flight: set[asyncio.Task[None]] = set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if len(in_flight) >= MAX_BATCHES_IN_FLIGHT:
                    _, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                batch, self._pending = (
                    self._pending[:MAX_BATCH_ROWS],
                    self._pending[MAX_BATCH_ROWS:],
                )
                task = asyncio.create_task(self._commit(self._chain_batch(batch)))
                in_flight.add(task)
            if self._closing:
                await asyncio.gather(*in_flight)
                return

    def _chain_batch(self, batch: list[_Pending]) -> list[_TenantBatch]:
        """Group by tenant and chain each group after the head this process expects (the
        last one it chained), which becomes the group's new head. A tenant whose head is
        not known is left unchained, for the locked path."""
        by_tenant: dict[uuid.UUID, list[_Pending]] = defaultdict(list)
        for pending in batch:
            by_tenant[pending.entry.tenant_id].append(pending)
        groups = []
        for tenant_id, rows in by_tenant.items():
            head = self._heads.get(tenant_id)
            chained = None
            if head is not None:
                chained = self._chain(tenant_id, head, [p.entry for p in rows])
                self._heads[tenant_id] = chained.new_head
            groups.append(_TenantBatch(tenant_id, rows, chained))
        return groups

    async def _commit(self, groups: list[_TenantBatch]) -> None:
        for group in groups:
            try:
                await self._commit_tenant(group)
            except Exception as exc:
                self.failing = True
                self._heads.pop(group.tenant_id, None)
                log.error("access_log_write_failed", error_type=type(exc).__name__)
                for pending in group.rows:
                    if not pending.done.done():
                        pending.done.set_exception(Unavailable("access log unavailable"))
            else:
                self.failing = False
                for pending in group.rows:
                    if not pending.done.done():
                        pending.done.set_result(None)

    async def _commit_tenant(self, group: _TenantBatch) -> None:
        """One statement when this process knew the chain head (it wrote the last rows:
        the usual case); else, or when another process appended since, lock the head in
        a transaction and chain from it."""
        tenant_id = group.tenant_id
        if group.chained is not None and await self._append(
            self._db.tenant_fetchrow, tenant_id, group.chained
        ):
            return
        async with self._db.tenant_tx(tenant_id) as conn:
            locked = await conn.fetchrow(Q.lock_head, tenant_id)
            if locked is None:
                # A tenant's first row: create its head (a concurrent creator's insert
                # waits for ours and does nothing), then lock it.
                await conn.execute(Q.ensure_head, tenant_id, GENESIS)
                locked = await conn.fetchrow(Q.lock_head, tenant_id)
            assert locked is not None
            chained = self._chain(
                tenant_id,
                (locked["seq"], bytes(locked["row_hash"])),
                [p.entry for p in group.rows],
            )

            async def fetchrow(_: uuid.UUID, query: str, *args: object) -> asyncpg.Record | None:
                return await conn.fetchrow(query, tenant_id, *args)

            appended = await self._append(fetchrow, tenant_id, chained)
            assert appended, "the chain head moved while locked"
        # Batches chained after this one assumed another head; they find out in the
        # database and take this path too.
        self._heads[tenant_id] = chained.new_head

    def _chain(
        self, tenant_id: uuid.UUID, head: tuple[int, bytes], entries: list[AccessEntry]
    ) -> _Chained:
        """The rows of `entries` chained after `head`, as the append statement's columns."""
        seq, prev = head
        columns: list[list[object]] = [[] for _ in range(16)]
        last_use: dict[uuid.UUID, tuple[datetime, str | None]] = {}
        for entry in entries:
            seq += 1
            ip_hash = self.ip_hash(entry.ip)
            current = row_hash(
                prev,
                ChainedFields(
                    tenant_id=tenant_id,
                    seq=seq,
                    at=entry.at,
                    request_id=entry.request_id,
                    api_key_id=entry.api_key_id,
                    key_prefix=entry.key_prefix,
                    ip_hash=ip_hash,
                    method=entry.method,
                    route=entry.route,
                    status=entry.status,
                    bytes_in=entry.bytes_in,
                    bytes_out=entry.bytes_out,
                    subject_ref_hash=entry.subject_ref_hash,
                    artefact_id=entry.artefact_id,
                ),
            )
            values = (
                seq, entry.at, entry.request_id, entry.api_key_id, entry.key_prefix,
                entry.ip, ip_hash, entry.method, entry.route, entry.status, entry.bytes_in,
                entry.bytes_out, entry.subject_ref_hash, entry.artefact_id, prev, current,
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
            prev = current
            if entry.api_key_id is not None and entry.key_authenticated:
                last_use[entry.api_key_id] = (entry.at, entry.ip)
        return _Chained(head, columns, (seq, prev), list(last_use.items()))

    async def _append(
        self, fetchrow: TenantFetchRow, tenant_id: uuid.UUID, chained: _Chained
    ) -> bool:
        """Append chained rows if the head is still the one they were chained after."""
        used = chained.last_use
        result = await fetchrow(
            tenant_id, Q.append, chained.head[0], chained.head[1], *chained.columns,
            chained.new_head[0], chained.new_head[1],
            [key_id for key_id, _ in used], [at for _, (at, _) in used],
            [ip for _, (_, ip) in used],
        )  # fmt: skip
        return result is not None and bool(result["appended"])
