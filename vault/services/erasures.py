"""Erasure instructions: request, read, list, cancel. The shredding itself is
workers/erasure.py; completion follows the shred ledger (vault/services/ledger.py).

Requesting an erasure starts the subject's next generation in the same transaction, so
data written after the request is a new life under new keys and survives it, while the
requested generation's keys are destroyed whatever arrives later.
"""

from __future__ import annotations

import builtins
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.deadlines import erasure_due_at, erasure_not_before
from vault.domain.erasures import ErasureStatus, check_transition
from vault.domain.subject_refs import SubjectRef
from vault.domain.tenant_settings import TenantSettings
from vault.errors import Conflict, InvalidInput, NotFound, Unavailable
from vault.observability import events
from vault.services.erasure_transitions import transition
from vault.services.ledger_controls import record_erasure_request
from vault.services.subject_refs import SubjectRefHasher
from vault.services.tenants import load_settings
from vault.services.wakeups import ERASURES_DUE, WakeupSender, notify

Q = Queries("erasures")
log = structlog.get_logger("datavault.erasures")

MAX_TEXT = 500
# The partial unique index (migration 0016) that allows one scheduled erasure per subject.
_ONE_SCHEDULED = "erasures_one_scheduled"
# A request that lost the race for the one open erasure starts again once; more attempts
# only matter when that erasure also finished in between.
_CONCURRENT_ATTEMPTS = 3
# A request aborted by PostgreSQL as a deadlock's victim (or a serialization failure)
# starts again, at most this many times in all, then answers 503 with Retry-After. The
# executor's batch claims an erasure row before it locks the subject's row, a request
# the other way round (it must see the subject's generation before its erasures); the
# batch goes on once the request is aborted, so one retry normally suffices.
_DEADLOCK_ATTEMPTS = 3
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# Requests decide on the tenant's settings as last read (the statement checks them): a
# change makes one attempt more, settings changed again in between another.
_SETTINGS_ATTEMPTS = 3
# Tenants whose settings a process keeps (not secret; all forgotten when full).
_SETTINGS_CACHED = 10_000
# The journal's words for a braked instruction and for one extended to data written since.
_BRAKED_DETAIL = "rate brake: held back 24 h"
_EXTENDED_DETAIL = "asked again: extended to data written since"
# erasures.sql `items`: what an erasure's items say (dv_erasure_request returns whole rows).
_ITEM_COLUMNS = ("key_id", "category", "outcome", "destroyed_at", "hold_ids", "kept_until")


@dataclass(frozen=True)
class ErasureRequest:
    reason: str | None
    reference: str | None


class ErasureService:
    def __init__(
        self, db: Database, refs: SubjectRefHasher, wakeups: WakeupSender | None = None
    ) -> None:
        self._db = db
        self._refs = refs
        self._wakeups = wakeups or WakeupSender(db)
        # Per tenant: the settings document as read (the statement's comparison) and it
        # read by TenantSettings. None: not read yet, the defaults assumed.
        self._settings: dict[uuid.UUID, tuple[str | None, TenantSettings]] = {}

    async def request(
        self, tenant_id: uuid.UUID, ref: SubjectRef, request: ErasureRequest, api_key_id: uuid.UUID,
        now: datetime | None = None, *, key_to_check: uuid.UUID | None = None,
    ) -> tuple[dict[str, Any], bool]:  # fmt: skip
        """(erasure, created). Every instruction is carried out (DESIGN.md): a subject
        whose erasure is scheduled or in progress, with no data written since, gets that
        one back; a scheduled one is extended to data written since; otherwise (none, or
        only held, completed or cancelled ones, or an in-progress one with data written
        since) a new erasure starts.

        `key_to_check`: the request's API key when it was recognised from memory
        (`Principal.key_to_check`): its liveness is checked in the request's statement."""
        ref_hash = await self._refs.hash(tenant_id, ref)
        now = now or datetime.now(UTC)
        for _ in range(_CONCURRENT_ATTEMPTS):
            try:
                erasure, created = await self._request_retrying(
                    tenant_id, ref_hash, request, api_key_id, now, key_to_check
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != _ONE_SCHEDULED:
                    raise
                # A concurrent request for the same subject committed its instruction
                # first (a ref never seen has no subject row to queue on): start again,
                # which finds that one scheduled and answers with it.
                continue
            if created:
                if erasure["not_before"] <= now:
                    # Due at once: the executor runs now that it has committed, not at
                    # its next poll.
                    self._wakeups.wake(ERASURES_DUE, tenant_id)
                events.erasure_requested(
                    tenant_id, erasure["id"], api_key_id, rate_braked=erasure["braked"]
                )
            return erasure, created
        raise Conflict("concurrent erasure requests for this subject; try again")

    async def _request_retrying(
        self, tenant_id: uuid.UUID, ref_hash: bytes, request: ErasureRequest,
        api_key_id: uuid.UUID, now: datetime, key_to_check: uuid.UUID | None,
    ) -> tuple[dict[str, Any], bool]:  # fmt: skip
        """_request_once, again after a deadlock or serialization failure (the whole
        transaction was rolled back, so starting over is safe), up to _DEADLOCK_ATTEMPTS."""
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                return await self._request_once(
                    tenant_id, ref_hash, request, api_key_id, now, key_to_check
                )
            except _RETRYABLE as exc:
                log.info(
                    "erasure_request_retried", tenant_id=str(tenant_id), attempt=attempt,
                    error_type=type(exc).__name__,
                )  # fmt: skip
        raise Unavailable("the subject is being erased right now; try again", retry_after=1)

    async def _request_once(
        self, tenant_id: uuid.UUID, ref_hash: bytes, request: ErasureRequest,
        api_key_id: uuid.UUID, now: datetime, key_to_check: uuid.UUID | None,
    ) -> tuple[dict[str, Any], bool]:  # fmt: skip
        """One statement in its own transaction (dv_erasure_request, migrations 0028 and
        0040): the subject's lock, its running erasures, the rate brake, the next
        generation, the row and its event row, and a new or scheduled answer's
        `erasure_request` shred-ledger entry from the row as the statement holds it
        locked (so a restored backup runs one it lacks, and no cancellation comes
        between), as the function's comment says. What the domain code decides goes in
        as arguments, from the tenant's settings as last read here; the statement
        compares them with the row's, and if they changed it writes nothing and returns
        the row's, to decide again with. The statement commits before the answer: the
        ledger entry is durable by then (issue 19, fifth round: BEGIN, the statement,
        the ledger row and COMMIT were four round trips)."""
        # The two transitions the statement may journal (a new instruction, scheduled; a
        # scheduled one extended), checked against the state machine as before.
        check_transition(None, ErasureStatus.SCHEDULED)
        check_transition(ErasureStatus.SCHEDULED, ErasureStatus.SCHEDULED)
        due_at = erasure_due_at(now)
        for _ in range(_SETTINGS_ATTEMPTS):
            document, settings = self._settings.get(tenant_id, (None, TenantSettings()))
            grace = timedelta(hours=settings.erasure_grace_hours)
            row = await self._db.tenant_fetchrow(
                tenant_id, Q.request, key_to_check, ref_hash, uuid.uuid4(), request.reason,
                request.reference, api_key_id, now, due_at, document,
                settings.erasure_rate_limit_per_hour, erasure_not_before(now, grace, False),
                erasure_not_before(now, grace, True), _BRAKED_DETAIL, _EXTENDED_DETAIL,
            )  # fmt: skip
            assert row is not None
            if row["created"] is not None:
                erasure = dict(row["erasure"])
                erasure["items"] = [
                    {name: item[name] for name in _ITEM_COLUMNS} for item in row["items"]
                ]
                return erasure, bool(row["created"])
            self._remember_settings(tenant_id, row["settings"])
        raise Conflict("the tenant's settings kept changing; try again")

    def _remember_settings(self, tenant_id: uuid.UUID, document: str | None) -> None:
        if len(self._settings) >= _SETTINGS_CACHED and tenant_id not in self._settings:
            self._settings.clear()
        parsed = TenantSettings.from_document(json.loads(document) if document else {})
        self._settings[tenant_id] = (document, parsed)

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
            # The caller publishes it before answering (VaultState.ledger).
            await record_erasure_request(conn, tenant_id, erasure_id)
            erasure = await self._read(conn, tenant_id, erasure_id)
        events.erasure_cancelled(tenant_id, erasure_id, api_key_id)
        return erasure


def _check_status(status: str | None) -> None:
    if status is not None and status not in set(ErasureStatus):
        raise InvalidInput(f"status must be one of {', '.join(ErasureStatus)}", field="status")
