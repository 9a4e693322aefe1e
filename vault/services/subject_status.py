"""A subject's status and counts, and restriction of processing (GDPR Art. 18): each one
transaction, for the API and the console alike."""

from __future__ import annotations

import uuid

from vault.db.database import Connection, Database
from vault.domain.subject_refs import SubjectRef
from vault.errors import InvalidInput
from vault.services.ledger_inline import InlineLedger
from vault.services.ledger_standing import record_restriction
from vault.services.subjects import Subject, SubjectService, SubjectSummary

# The reason a subject's processing is restricted: it may describe the person, so it is
# sealed (SubjectService.restrict), and short.
MAX_RESTRICTION_REASON_LENGTH = 1000


class SubjectStatusService:
    """Placing and lifting a restriction are recorded in the shred ledger
    (vault/services/ledger_standing.py) and published before the answer, so a restored
    backup neither loses a restriction nor brings back one lifted since."""

    def __init__(
        self, db: Database, subjects: SubjectService, ledger: InlineLedger | None = None
    ) -> None:
        self._db = db
        self._subjects = subjects
        self._ledger = ledger if ledger is not None else InlineLedger(None)

    async def summary(self, tenant_id: uuid.UUID, ref: SubjectRef) -> SubjectSummary:
        """NotFound for a subject the vault has never seen."""
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(conn, tenant_id, ref_hash)
            return await self._summary(conn, subject)

    async def restrict(self, tenant_id: uuid.UUID, ref: SubjectRef, reason: str) -> SubjectSummary:
        """From now on only the compliance scope reads the subject's data, nothing new is
        written and the application's deletes answer 409; an erasure still proceeds."""
        if not 1 <= len(reason) <= MAX_RESTRICTION_REASON_LENGTH:
            raise InvalidInput(
                f"reason must be 1-{MAX_RESTRICTION_REASON_LENGTH} characters", field="reason"
            )
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(conn, tenant_id, ref_hash)
            restricted_at, change = await self._subjects.restrict(conn, subject, reason)
            await record_restriction(conn, tenant_id, subject.id, ref_hash, restricted_at, change)
            summary = await self._summary(
                conn, await self._subjects.find(conn, tenant_id, ref_hash)
            )
        await self._make_durable(tenant_id)
        return summary

    async def lift_restriction(self, tenant_id: uuid.UUID, ref: SubjectRef) -> SubjectSummary:
        ref_hash = await self._subjects.ref_hash(tenant_id, ref)
        async with self._db.tenant_tx(tenant_id) as conn:
            subject = await self._subjects.find(conn, tenant_id, ref_hash)
            change = await self._subjects.lift_restriction(conn, subject)
            await record_restriction(conn, tenant_id, subject.id, ref_hash, None, change)
            summary = await self._summary(
                conn, await self._subjects.find(conn, tenant_id, ref_hash)
            )
        await self._make_durable(tenant_id)
        return summary

    async def _make_durable(self, tenant_id: uuid.UUID) -> None:
        await self._ledger.make_durable(
            "restriction_ledger_entry_deferred", tenant_id=str(tenant_id)
        )

    async def _summary(self, conn: Connection, subject: Subject) -> SubjectSummary:
        status = await self._subjects.status(conn, subject)
        return SubjectSummary(subject, status, await self._subjects.summary(conn, subject))
