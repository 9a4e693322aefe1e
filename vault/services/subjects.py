"""Data subjects: found by the keyed hash of their reference, created by the first write.

The vault stores a reference only as HMAC(tenant key, NFC ref) plus a copy sealed with a
data key under the subject's identity key, which erasure destroys like any other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.records import seal_record
from vault.db.database import Connection
from vault.db.sql import Queries
from vault.domain.categories import IDENTITY_CATEGORY
from vault.domain.subject_refs import SubjectRef
from vault.errors import NotFound, Restricted
from vault.services.keyring import KeyRing, subject_object
from vault.services.subject_refs import SubjectRefHasher

Q = Queries("subjects")


@dataclass(frozen=True)
class Subject:
    tenant_id: uuid.UUID
    id: uuid.UUID
    ref_hash: bytes
    generation: int
    created_at: datetime
    restricted_at: datetime | None
    # Generations under an erasure instruction (not cancelled), as of the subject's read.
    erased_generations: frozenset[int] = frozenset()

    @property
    def status(self) -> str:
        """Without `erased`, which needs a query: SubjectService.status answers in full."""
        return "restricted" if self.restricted_at is not None else "active"


@dataclass(frozen=True)
class SubjectSummary:
    """A subject with its status (API.md: active, restricted or erased) and, per category,
    how many artefacts and records it has and their bytes."""

    subject: Subject
    status: str
    categories: dict[str, dict[str, int]]


@dataclass(frozen=True)
class SubjectAccess:
    """What the caller may do with restricted subjects (the compliance scope may read)."""

    may_read_restricted: bool


class SubjectService:
    def __init__(self, keyring: KeyRing, refs: SubjectRefHasher) -> None:
        self._keyring = keyring
        self._refs = refs

    async def ref_hash(self, tenant_id: uuid.UUID, ref: SubjectRef) -> bytes:
        return await self._refs.hash(tenant_id, ref)

    async def find(
        self, conn: Connection, tenant_id: uuid.UUID, ref_hash: bytes, *, lock: bool = False
    ) -> Subject:
        """`lock`: hold the subject's row lock to the end of the transaction."""
        row = await conn.fetchrow(Q.find_for_update if lock else Q.find, tenant_id, ref_hash)
        if row is None:
            raise NotFound("no such subject")
        return subject_from_columns(tenant_id, row)

    async def find_or_create(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        ref: SubjectRef,
        ref_hash: bytes,
        *,
        lock: bool = False,
    ) -> Subject:
        find = Q.find_for_update if lock else Q.find
        row = await conn.fetchrow(find, tenant_id, ref_hash)
        if row is None:
            await conn.execute(Q.insert, tenant_id, uuid.uuid4(), ref_hash)
            row = await conn.fetchrow(find, tenant_id, ref_hash)
        assert row is not None
        subject = subject_from_columns(tenant_id, row)
        if not row["ref_copy_live"]:
            await self._seal_ref_copy(conn, subject, ref)
        return subject

    async def _seal_ref_copy(self, conn: Connection, subject: Subject, ref: SubjectRef) -> None:
        """Seal the reference under this generation's identity key: a new subject, or a
        new life after an erasure shredded the old copy."""
        data_key = await self._keyring.new_data_key_for_write(
            conn, subject.tenant_id, subject.id, IDENTITY_CATEGORY, subject.generation, "record"
        )
        context = data_key.content_context(subject_object(subject.id), "ref")
        sealed = seal_record(data_key.key, ref.reveal().encode(), context)
        await conn.execute(Q.set_ref_copy, subject.tenant_id, subject.id, sealed, data_key.id)

    async def restrict(
        self, conn: Connection, subject: Subject, reason: str
    ) -> tuple[datetime, int]:
        """The reason may describe the person; it is sealed with the identity data key,
        so erasure shreds it with the reference. After an erasure shredded that key (what
        it kept can still be restricted: restriction freezes its deletion), the reason is
        not stored at all: there is nothing left to seal it under that erasure would not
        have destroyed. The subject's playback links end with it, for good. Returns when
        the restriction in force started, and this change's place in the order of the
        subject's restriction changes (migration 0036)."""
        data_key_id = await conn.fetchval(Q.ref_key_of, subject.tenant_id, subject.id)
        sealed = None
        try:
            data_key = await self._keyring.data_key(conn, subject.tenant_id, data_key_id)
        except NotFound:  # KeyDestroyed too: the identity key went with an erasure
            pass
        else:
            context = data_key.content_context(subject_object(subject.id), "restriction")
            sealed = seal_record(data_key.key, reason.encode(), context)
        row = await conn.fetchrow(Q.restrict, subject.tenant_id, subject.id, sealed)
        assert row is not None, "the subject was found in this transaction"
        await conn.execute(Q.drop_playback_links, subject.tenant_id, subject.id)
        return row["restricted_at"], row["restriction_changes"]

    async def lift_restriction(self, conn: Connection, subject: Subject) -> int:
        """Returns this change's place in the order of the subject's restriction changes."""
        change: int = await conn.fetchval(Q.lift_restriction, subject.tenant_id, subject.id)
        return change

    async def status(self, conn: Connection, subject: Subject) -> str:
        """API.md: `active`, `restricted` or `erased` (subjects.sql `erased` has the rule).
        Erased wins over a restriction left in place: the restriction still refuses new
        data (lifting it lets a new life start), but what the erasure left (kept by a hold
        or retention) is readable only by compliance anyway."""
        if await conn.fetchval(Q.erased, subject.tenant_id, subject.id):
            return "erased"
        return subject.status

    async def summary(self, conn: Connection, subject: Subject) -> dict[str, dict[str, int]]:
        rows = await conn.fetch(Q.summary, subject.tenant_id, subject.id)
        return {
            r["category"]: {
                "artefacts": r["artefacts"],
                "records": r["records"],
                "bytes": r["bytes"],
            }
            for r in rows
        }


def readable_generations(subject: Subject, access: SubjectAccess) -> frozenset[int] | None:
    """Generations the caller may not read: those under an erasure instruction (what is
    left of them is kept by holds or retention, readable only by compliance). None means
    no restriction applies."""
    if access.may_read_restricted:
        return None
    # Read with the subject in the same statement (migration 0011 `dv_subject`).
    return subject.erased_generations or None


def check_generation(hidden: frozenset[int] | None, generation: int) -> None:
    if hidden and generation in hidden:
        raise Restricted("kept after an erasure (hold or retention): compliance scope only")


def check_access(subject: Subject, access: SubjectAccess) -> None:
    """Art. 18: once restricted, only the compliance scope reads a subject's data."""
    if subject.restricted_at is not None and not access.may_read_restricted:
        raise Restricted("processing of this subject is restricted")


def check_readable(subject: Subject, access: SubjectAccess, generation: int) -> None:
    """The read path's one rule for data of `generation`: refused (Restricted) when the
    subject is restricted or the generation is under an erasure instruction (kept by a
    hold or retention), unless the caller is compliance. Checked when a read starts and,
    for a transfer, again on the clock while it streams (services/transfers.py)."""
    check_access(subject, access)
    check_generation(readable_generations(subject, access), generation)


def check_writable(subject: Subject) -> None:
    if subject.restricted_at is not None:
        raise Restricted("processing of this subject is restricted: no new data")


def subject_from_columns(tenant_id: uuid.UUID, row: Any) -> Subject:
    """A subject from subjects.sql `find` or a request function's row (migration 0011),
    whose subject columns are prefixed as the row may also carry a record's or key's."""
    erased = row.get("erased_generations")
    return Subject(
        tenant_id,
        row["subject_id"],
        bytes(row["ref_hash"]),
        row["subject_generation"],
        row["subject_created_at"],
        row["restricted_at"],
        frozenset(erased or ()),
    )
