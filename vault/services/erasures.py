"""Erasure instructions: request, read, list, cancel. The shredding itself is
workers/erasure.py; completion follows the shred ledger (vault/services/ledger.py).

Requesting an erasure starts the subject's next generation in the same transaction, so
data written after the request is a new life under new keys and survives it, while the
requested generation's keys are destroyed whatever arrives later.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.deadlines import erasure_due_at, erasure_not_before
from vault.domain.erasures import ErasureStatus
from vault.domain.subject_refs import SubjectRef
from vault.errors import Conflict, InvalidInput, NotFound
from vault.observability import events
from vault.services.erasure_transitions import journal_created, transition
from vault.services.subject_refs import SubjectRefHasher
from vault.services.tenants import load_settings
from vault.services.wakeups import ERASURES_DUE, notify

Q = Queries("erasures")

MAX_TEXT = 500
# The partial unique index (migration 0016) that allows one scheduled erasure per subject.
_ONE_SCHEDULED = "erasures_one_scheduled"
# A request that lost the race for the one open erasure starts again once; more attempts
# only matter when that erasure also finished in between.
_CONCURRENT_ATTEMPTS = 3


@dataclass(frozen=True)
class ErasureRequest:
    reason: str | None
    reference: str | None


class ErasureService:
    def __init__(self, db: Database, refs: SubjectRefHasher) -> None:
        self._db = db
        self._refs = refs

    async def request(
        self, tenant_id: uuid.UUID, ref: SubjectRef, request: ErasureRequest, api_key_id: uuid.UUID,
        now: datetime | None = None,
    ) -> tuple[dict[str, Any], bool]:  # fmt: skip
        """(erasure, created). Every instruction is carried out (DESIGN.md): a subject
        whose erasure is scheduled or in progress, with no data written since, gets that
        one back; a scheduled one is extended to data written since; otherwise (none, or
        only held, completed or cancelled ones, or an in-progress one with data written
        since) a new erasure starts."""
        ref_hash = await self._refs.hash(tenant_id, ref)
        now = now or datetime.now(UTC)
        for _ in range(_CONCURRENT_ATTEMPTS):
            try:
                erasure, created = await self._request_once(
                    tenant_id, ref_hash, request, api_key_id, now
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != _ONE_SCHEDULED:
                    raise
                # A concurrent request for the same subject committed its instruction
                # first (a ref never seen has no subject row to queue on): start again,
                # which finds that one scheduled and answers with it.
                continue
            if created:
                events.erasure_requested(
                    tenant_id, erasure["id"], api_key_id, rate_braked=erasure["braked"]
                )
            return erasure, created
        raise Conflict("concurrent erasure requests for this subject; try again")

    async def _request_once(
        self, tenant_id: uuid.UUID, ref_hash: bytes, request: ErasureRequest,
        api_key_id: uuid.UUID, now: datetime,
    ) -> tuple[dict[str, Any], bool]:  # fmt: skip
        async with self._db.tenant_tx(tenant_id) as conn:
            # The subject's row lock orders this against writers creating keys (they hold
            # it shared while they do: migration 0016) and against other requests.
            subject = await conn.fetchrow(Q.lock_subject, tenant_id, ref_hash)
            running = await conn.fetch(Q.running_for_subject, tenant_id, ref_hash)
            if running:
                answer = running[0]  # the scheduled one if there is one
                covered = answer["generation"] if answer["subject_id"] is not None else 0
                written_since = subject is not None and await conn.fetchval(
                    Q.data_since, tenant_id, subject["id"], covered
                )
                if not written_since:
                    return await self._read(conn, tenant_id, answer["id"]), False
                if answer["status"] == ErasureStatus.SCHEDULED:
                    await self._extend(conn, tenant_id, answer["id"], subject, api_key_id)
                    return await self._read(conn, tenant_id, answer["id"]), False
            settings = await load_settings(conn, tenant_id)
            limit = settings.erasure_rate_limit_per_hour
            braked = False
            if limit is not None:
                await conn.execute(Q.rate_lock, tenant_id)
                braked = int(await conn.fetchval(Q.recent_count, tenant_id)) >= limit
            grace = timedelta(hours=settings.erasure_grace_hours)
            not_before = erasure_not_before(now, grace, braked)
            erasure_id = uuid.uuid4()
            subject_id = subject["id"] if subject else None
            generation = subject["generation"] if subject else None
            if subject is not None:
                await conn.execute(Q.next_generation, tenant_id, subject_id)
            inserted = await conn.fetchrow(
                Q.insert, tenant_id, erasure_id, ref_hash, subject_id, generation, request.reason,
                request.reference, now, api_key_id, not_before, erasure_due_at(now), braked,
            )  # fmt: skip
            detail = "rate brake: held back 24 h" if braked else None
            await journal_created(conn, tenant_id, erasure_id, api_key_id, detail)
            if not_before <= now:
                # Due at once: the executor runs when this commits, not at its next poll.
                await notify(conn, ERASURES_DUE, tenant_id)
            assert inserted is not None
            # What _read would find: the row as inserted, nothing shredded or kept yet.
            return {**dict(inserted), "items": []}, True

    async def _extend(
        self, conn: Connection, tenant_id: uuid.UUID, erasure_id: uuid.UUID, subject: Any,
        api_key_id: uuid.UUID,
    ) -> None:  # fmt: skip
        """A scheduled erasure asked for again after data was written since: it now
        covers that data too, and later writes start the next generation."""
        await conn.execute(Q.extend, tenant_id, erasure_id, subject["id"], subject["generation"])
        await conn.execute(Q.next_generation, tenant_id, subject["id"])
        await transition(
            conn, tenant_id, erasure_id, ErasureStatus.SCHEDULED, ErasureStatus.SCHEDULED,
            api_key_id=api_key_id, detail="asked again: extended to data written since",
        )  # fmt: skip

    async def get(self, tenant_id: uuid.UUID, erasure_id: uuid.UUID) -> dict[str, Any]:
        async with self._db.tenant_tx(tenant_id) as conn:
            return await self._read(conn, tenant_id, erasure_id)

    async def _read(self, conn: Any, tenant_id: uuid.UUID, erasure_id: uuid.UUID) -> dict[str, Any]:
        row = await conn.fetchrow(Q.get, tenant_id, erasure_id)
        if row is None:
            raise NotFound("no such erasure")
        erasure = dict(row)
        erasure["items"] = [dict(i) for i in await conn.fetch(Q.items, tenant_id, erasure_id)]
        return erasure

    async def list(
        self,
        tenant_id: uuid.UUID,
        status: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        subject_ref_hash: bytes | None = None,
    ) -> list[dict[str, Any]]:
        _check_status(status)
        async with self._db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(
                Q.list,
                tenant_id,
                status,
                after[0] if after else None,
                after[1] if after else None,
                limit,
                subject_ref_hash,
            )
            return [await self._read(conn, tenant_id, row["id"]) for row in rows]

    async def list_changed(
        self,
        tenant_id: uuid.UUID,
        updated_since: datetime,
        status: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        subject_ref_hash: bytes | None = None,
    ) -> builtins.list[dict[str, Any]]:  # `list` here is the method above
        """Erasures whose status or contents changed at or after `updated_since`, oldest
        change first, after the cursor `after` (updated_at, id): how a client follows them."""
        _check_status(status)
        async with self._db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(
                Q.list_changed,
                tenant_id,
                updated_since,
                status,
                after[0] if after else None,
                after[1] if after else None,
                limit,
                subject_ref_hash,
            )
            return [await self._read(conn, tenant_id, row["id"]) for row in rows]

    async def release_brake(
        self, tenant_id: uuid.UUID, erasure_id: uuid.UUID, api_key_id: uuid.UUID,
        now: datetime | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """An admin lets a rate-braked erasure through (DESIGN.md, API keys): it runs once
        the tenant's grace period has passed, as if it had not been braked."""
        now = now or datetime.now(UTC)
        async with self._db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(Q.get_for_update, tenant_id, erasure_id)
            if row is None:
                raise NotFound("no such erasure")
            if (
                row["status"] != ErasureStatus.SCHEDULED
                or not row["braked"]
                or (row["not_before"] <= now)
            ):
                raise Conflict("only an erasure the rate brake still holds back can be released")
            settings = await load_settings(conn, tenant_id)
            grace = timedelta(hours=settings.erasure_grace_hours)
            grace_end = erasure_not_before(row["requested_at"], grace, braked=False)
            await conn.execute(Q.release_brake, tenant_id, erasure_id, max(grace_end, now))
            if grace_end <= now:
                await notify(conn, ERASURES_DUE, tenant_id)
            await transition(
                conn, tenant_id, erasure_id, ErasureStatus.SCHEDULED, ErasureStatus.SCHEDULED,
                api_key_id=api_key_id, detail="rate brake released by an admin",
            )  # fmt: skip
            return await self._read(conn, tenant_id, erasure_id)

    async def cancel(
        self, tenant_id: uuid.UUID, erasure_id: uuid.UUID, api_key_id: uuid.UUID
    ) -> dict[str, Any]:
        """Only during the grace period: once not_before has passed, the erasure runs."""
        async with self._db.tenant_tx(tenant_id) as conn:
            row = await conn.fetchrow(Q.get_for_update, tenant_id, erasure_id)
            if row is None:
                raise NotFound("no such erasure")
            if row["status"] != ErasureStatus.SCHEDULED or row["not_before"] <= datetime.now(UTC):
                raise Conflict("this erasure can no longer be cancelled")
            await transition(
                conn,
                tenant_id,
                erasure_id,
                ErasureStatus.SCHEDULED,
                ErasureStatus.CANCELLED,
                api_key_id=api_key_id,
            )
            erasure = await self._read(conn, tenant_id, erasure_id)
        events.erasure_cancelled(tenant_id, erasure_id, api_key_id)
        return erasure


def _check_status(status: str | None) -> None:
    if status is not None and status not in set(ErasureStatus):
        raise InvalidInput(f"status must be one of {', '.join(ErasureStatus)}", field="status")
