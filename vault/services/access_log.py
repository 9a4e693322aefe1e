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
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import asyncpg
import structlog

from crypto.mac import keyed_hash
from crypto.secrets import SecretBytes
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.access_chain import GENESIS, ChainedFields, row_hash
from vault.errors import Unavailable

Q = Queries("access_log")
log = structlog.get_logger("datavault.access_log")

# Rows per transaction: bounds one commit's size and latency under a burst.
MAX_BATCH_ROWS = 500


class _FetchRow(Protocol):
    def __call__(
        self, tenant_id: uuid.UUID, query: str, /, *args: object
    ) -> Awaitable[asyncpg.Record | None]: ...


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
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = (
                    self._pending[:MAX_BATCH_ROWS],
                    self._pending[MAX_BATCH_ROWS:],
                )
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[_Pending]) -> None:
        by_tenant: dict[uuid.UUID, list[_Pending]] = defaultdict(list)
        for pending in batch:
            by_tenant[pending.entry.tenant_id].append(pending)
        for tenant_id, rows in by_tenant.items():
            try:
                await self._commit_tenant(tenant_id, [p.entry for p in rows])
            except Exception as exc:
                self.failing = True
                log.error("access_log_write_failed", error_type=type(exc).__name__)
                for pending in rows:
                    if not pending.done.done():
                        pending.done.set_exception(Unavailable("access log unavailable"))
            else:
                self.failing = False
                for pending in rows:
                    if not pending.done.done():
                        pending.done.set_result(None)

    async def _commit_tenant(self, tenant_id: uuid.UUID, entries: list[AccessEntry]) -> None:
        """One statement when this process knows the chain head (it wrote the last rows:
        the usual case); else, or when another process appended since, lock the head in
        a transaction and chain from it."""
        head = self._heads.get(tenant_id)
        if head is not None and await self._append(
            self._db.tenant_fetchrow, tenant_id, head, entries
        ):
            return
        self._heads.pop(tenant_id, None)
        async with self._db.tenant_tx(tenant_id) as conn:
            locked = await conn.fetchrow(Q.lock_head, tenant_id)
            if locked is None:
                # A tenant's first row: create its head (a concurrent creator's insert
                # waits for ours and does nothing), then lock it.
                await conn.execute(Q.ensure_head, tenant_id, GENESIS)
                locked = await conn.fetchrow(Q.lock_head, tenant_id)
            assert locked is not None
            head = (locked["seq"], bytes(locked["row_hash"]))

            async def fetchrow(_: uuid.UUID, query: str, *args: object) -> asyncpg.Record | None:
                return await conn.fetchrow(query, tenant_id, *args)

            appended = await self._append(fetchrow, tenant_id, head, entries)
            assert appended, "the chain head moved while locked"

    async def _append(
        self,
        fetchrow: _FetchRow,
        tenant_id: uuid.UUID,
        head: tuple[int, bytes],
        entries: list[AccessEntry],
    ) -> bool:
        """Chain `entries` after `head` and append them if the head is still there."""
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
        used = list(last_use.items())
        result = await fetchrow(
            tenant_id, Q.append, head[0], head[1], *columns, seq, prev,
            [key_id for key_id, _ in used], [at for _, (at, _) in used],
            [ip for _, (_, ip) in used],
        )  # fmt: skip
        if result is None or not result["appended"]:
            return False
        self._heads[tenant_id] = (seq, prev)
        return True
