"""Disclosures: record one (appended to the tenant's chain, its description sealed under
the subject's identity data key), read and list them, and what a subject's export shows.

Rules (vault/domain/disclosures.py): the terms, the chain's row encoding, and when a
disclosure is shown to its subject. Here: where the description is sealed, which hold
and subject a disclosure names, and the chain's head under its row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from crypto.context import KeyContext
from crypto.records import open_record, seal_record
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.access_chain import GENESIS
from vault.domain.categories import known_categories
from vault.domain.disclosures import (
    ChainedDisclosure,
    disclosure_hash,
    disclosure_terms,
    shown_to_subject,
)
from vault.domain.subject_refs import SubjectRef
from vault.errors import InvalidInput, NotFound
from vault.observability import events
from vault.services.chain_walk import AnchoredHead, ChainWalk, walk_chain
from vault.services.keyring import DataKey, KeyRing, subject_object
from vault.services.tenants import load_settings
from vault.services.transfers import TransferLease

Q = Queries("disclosures")
H = Queries("holds")
S = Queries("subjects")


@dataclass(frozen=True)
class Recorder:
    """Who records a disclosure (the API key) and in which request (the access log's
    request id, which the chain covers: the entry and its request can be matched)."""

    api_key_id: uuid.UUID
    request_id: str


@dataclass(frozen=True)
class Disclosure:
    id: uuid.UUID
    seq: int
    recorded_at: datetime
    recorded_by: uuid.UUID
    subject_ref_hash: bytes | None
    # While the vault can still decrypt the subject's reference copy (not after erasure).
    subject_ref: SubjectRef | None
    hold_id: uuid.UUID | None
    recipient: str
    legal_basis: str
    reference: str
    categories: tuple[str, ...]
    description: str | None
    # A description was given but its key is shredded (the subject was erased).
    description_erased: bool
    disclosed_at: datetime
    withhold_from_subject_until: datetime | None

    @property
    def opened_subject(self) -> bytes | None:
        """The subject whose data this entry carries opened (its reference or its
        description, decrypted with the subject's key), as its keyed hash; None when it
        names no subject or its keys are gone (only the hash is left to show)."""
        if self.subject_ref is None and self.description is None:
            return None
        return self.subject_ref_hash


def _part(disclosure_id: uuid.UUID) -> str:
    """The description's place under the identity data key: bound to this disclosure,
    so a sealed description moved to another entry fails to open."""
    return f"disclosure:{disclosure_id}"


class DisclosureService:
    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self._db = db
        self._keyring = keyring

    async def record(
        self,
        tenant_id: uuid.UUID,
        subject_ref_hash: bytes | None,
        hold_id: uuid.UUID | None,
        values: Mapping[str, object],
        recorder: Recorder,
        parse_errors: Mapping[str, str] | None = None,
        lease: TransferLease | None = None,
    ) -> Disclosure:
        """Check the terms (`disclosure_terms`), the hold (of this tenant; one held
        subject must be the disclosure's) and the subject, then append the entry. Every
        wrong field at once, with `parse_errors` (fields the caller could not parse):
        InvalidInput.of_fields. Without `subject_ref_hash` the hold's subject, if it
        names one, is the disclosure's. The entry as recorded is returned opened: with
        `lease` (the request's transfer), once committed, as `opened` has it."""
        now = datetime.now(UTC)
        async with self._db.tenant_tx(tenant_id) as conn:
            settings = await load_settings(conn, tenant_id)
            terms, found = disclosure_terms(values, known_categories(settings.categories), now)
            errors = {**found, **(parse_errors or {})}
            if hold_id is not None:
                hold = await conn.fetchrow(H.get, tenant_id, hold_id)
                held = _held_subject(hold)
                if hold is None:
                    # Another tenant's hold reads exactly like one that does not exist.
                    errors["hold_id"] = "no such hold"
                elif subject_ref_hash is None:
                    subject_ref_hash = held
                elif held is not None and held != subject_ref_hash:
                    errors["subject_ref"] = "the hold covers another subject"
            subject = None
            if subject_ref_hash is not None:
                # The subject's row lock, which an erasure takes too: the description is
                # sealed under a key that is live when this commits, and shredded by any
                # erasure after it.
                subject = await conn.fetchrow(S.find_for_update, tenant_id, subject_ref_hash)
            # As the terms have it, or as typed when another field failed.
            typed = values.get("description")
            description = terms.description if terms else _stripped(typed)
            if description and (subject is None or not subject["ref_copy_live"]):
                errors.setdefault(
                    "description",
                    "a description is sealed under the subject's keys, and this subject has "
                    "none (never stored, or erased): leave the description out",
                )
            if errors or terms is None:
                raise InvalidInput.of_fields(errors)
            disclosure_id = uuid.uuid4()
            sealed, key_id = None, None
            if terms.description and subject is not None:
                key_id = subject["ref_data_key_id"]
                data_key = await self._keyring.data_key(conn, tenant_id, key_id)
                context = data_key.content_context(
                    subject_object(subject["subject_id"]), _part(disclosure_id)
                )
                sealed = seal_record(data_key.key, terms.description.encode(), context)
            row = ChainedDisclosure(
                tenant_id=tenant_id,
                seq=0,  # its place: _append decides, under the head's row lock
                id=disclosure_id,
                recorded_at=now,
                recorded_by=recorder.api_key_id,
                request_id=recorder.request_id,
                subject_ref_hash=subject_ref_hash,
                subject_id=subject["subject_id"] if subject is not None else None,
                hold_id=hold_id,
                recipient=terms.recipient,
                legal_basis=terms.legal_basis,
                reference=terms.reference,
                categories=terms.categories,
                description_sealed=sealed,
                description_key_id=key_id,
                disclosed_at=terms.disclosed_at,
                withhold_from_subject_until=terms.withhold_from_subject_until,
            )
            seq = await _append(conn, row)
            found = await _found(conn, tenant_id, disclosure_id)
            recorded = None if lease is not None else await self._opened(conn, tenant_id, [found])
        events.disclosure_recorded(tenant_id, disclosure_id, seq, recorder.api_key_id)
        if recorded is None:
            assert lease is not None
            recorded = await self.opened(tenant_id, [found], lease)
        return recorded[0]

    async def get(
        self, tenant_id: uuid.UUID, disclosure_id: uuid.UUID, lease: TransferLease | None = None
    ) -> Disclosure:
        """One disclosure. With `lease` (the request's transfer), as `opened` has it."""
        async with self._db.tenant_tx(tenant_id) as conn:
            found = await _found(conn, tenant_id, disclosure_id)
            if lease is None:
                return (await self._opened(conn, tenant_id, [found]))[0]
        return (await self.opened(tenant_id, [found], lease))[0]

    async def search(
        self, tenant_id: uuid.UUID, *, subject_ref_hash: bytes | None = None,
        hold_id: uuid.UUID | None = None, since: datetime | None = None,
        until: datetime | None = None, after: tuple[datetime, uuid.UUID] | None = None,
        limit: int, lease: TransferLease | None = None,
    ) -> list[Disclosure]:  # fmt: skip
        """Newest disclosed first; `since` inclusive, `until` exclusive (disclosed_at).
        With `lease` (the request's transfer), as `opened` has it: the page's keys, of
        however many subjects, held in one statement."""
        async with self._db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(
                Q.list, tenant_id, subject_ref_hash, hold_id, since, until,
                after[0] if after else None, after[1] if after else None, limit,
            )  # fmt: skip
            if lease is None:
                return await self._opened(conn, tenant_id, rows)
        return await self.opened(tenant_id, rows, lease)

    async def opened(
        self, tenant_id: uuid.UUID, rows: Sequence[Any], lease: TransferLease,
        *, one_message: bool = True,
    ) -> list[Disclosure]:  # fmt: skip
        """The rows with their descriptions and subject references opened under the
        request's transfer: every identity data key they are sealed under is held by it,
        in one statement before anything is decrypted, and watched until the answer has
        left (TransferLease.hold_keys; `one_message` as there), so an erasure of any of
        their subjects completes only once the answer is out, or cuts it. A key the hold
        found destroyed is shown as one (description_erased, no subject_ref)."""
        wanted = {key_id for row in rows for key_id in _sealed_under(row)}
        held = await lease.hold_keys(dict.fromkeys(wanted), one_message=one_message)
        keys = {
            key_id: await self._keyring.open_data_key(tenant_id, row)
            for key_id, row in held.items()
        }
        return [_disclosure(row, keys) for row in rows]

    async def rows_for_subject_export(
        self, conn: Connection, tenant_id: uuid.UUID, subject_ref_hash: bytes, now: datetime
    ) -> list[Any]:
        """What the subject's export manifest lists, in the export's own snapshot: every
        disclosure about the subject whose withholding date has passed, not opened yet
        (`opened`, under the export's transfer)."""
        rows: list[Any] = []
        after: tuple[datetime, uuid.UUID] | None = None
        while True:  # a subject has few; paged all the same
            page = await conn.fetch(
                Q.list, tenant_id, subject_ref_hash, None, None, None,
                after[0] if after else None, after[1] if after else None, 500,
            )  # fmt: skip
            rows += [r for r in page if shown_to_subject(r["withhold_from_subject_until"], now)]
            if len(page) < 500:
                break
            after = (page[-1]["disclosed_at"], page[-1]["id"])
        return rows

    async def _opened(
        self, conn: Connection, tenant_id: uuid.UUID, rows: Sequence[Any]
    ) -> list[Disclosure]:
        """The rows with their descriptions and subject references opened where their
        keys still live, read in `conn`'s transaction, each once: for a caller that is no
        transfer (the console's form, whose answer is a redirect; `opened` holds them)."""
        keys: dict[uuid.UUID, DataKey] = {}
        for key_id in {key_id for row in rows for key_id in _sealed_under(row)}:
            with suppress(NotFound):  # KeyDestroyed too: shredded with the subject
                keys[key_id] = await self._keyring.data_key(conn, tenant_id, key_id)
        return [_disclosure(row, keys) for row in rows]


async def _found(conn: Connection, tenant_id: uuid.UUID, disclosure_id: uuid.UUID) -> Any:
    row = await conn.fetchrow(Q.get, tenant_id, disclosure_id)
    if row is None:
        raise NotFound("no such disclosure")
    return row


def _sealed_under(row: Any) -> list[uuid.UUID]:
    """The data keys `row`'s sealed values need: its description's, its subject's
    reference copy's (both the subject's identity keys)."""
    keys = []
    if row["description_sealed"] is not None and row["description_key_id"] is not None:
        keys.append(row["description_key_id"])
    if row["ref_sealed"] is not None and row["ref_data_key_id"] is not None:
        keys.append(row["ref_data_key_id"])
    return keys


def _disclosure(row: Any, keys: Mapping[uuid.UUID, DataKey]) -> Disclosure:
    """`row` with what of it `keys` (the live ones among its keys) opens."""
    description = None
    description_key = keys.get(row["description_key_id"])
    if row["description_sealed"] is not None and description_key is not None:
        context = description_key.content_context(
            subject_object(row["subject_id"]), _part(row["id"])
        )
        description = _open(description_key, row["description_sealed"], context)
    subject_ref = None
    ref_key = keys.get(row["ref_data_key_id"]) if row["ref_sealed"] is not None else None
    if ref_key is not None:
        context = ref_key.content_context(subject_object(row["ref_subject_id"]), "ref")
        subject_ref = SubjectRef(_open(ref_key, row["ref_sealed"], context))
    return Disclosure(
        id=row["id"],
        seq=row["seq"],
        recorded_at=row["recorded_at"],
        recorded_by=row["recorded_by"],
        subject_ref_hash=bytes(row["subject_ref_hash"]) if row["subject_ref_hash"] else None,
        subject_ref=subject_ref,
        hold_id=row["hold_id"],
        recipient=row["recipient"],
        legal_basis=row["legal_basis"],
        reference=row["reference"],
        categories=tuple(row["categories"]),
        description=description,
        description_erased=row["description_sealed"] is not None and description is None,
        disclosed_at=row["disclosed_at"],
        withhold_from_subject_until=row["withhold_from_subject_until"],
    )


async def _append(conn: Connection, row: ChainedDisclosure) -> int:
    """Chain `row` onto the tenant's head, under the head's row lock (created with the
    chain's first entry), and move the head; its seq."""
    await conn.execute(Q.ensure_head, row.tenant_id, GENESIS)
    head = await conn.fetchrow(Q.lock_head, row.tenant_id)
    assert head is not None, "ensure_head made it"
    prev = bytes(head["row_hash"])
    row = replace(row, seq=head["seq"] + 1)
    digest = disclosure_hash(prev, row)
    await conn.execute(
        Q.insert, row.tenant_id, row.seq, row.id, row.recorded_at, row.recorded_by,
        row.request_id, row.subject_ref_hash, row.subject_id, row.hold_id, row.recipient,
        row.legal_basis, row.reference, list(row.categories), row.description_sealed,
        row.description_key_id, row.disclosed_at, row.withhold_from_subject_until, prev,
        digest,
    )  # fmt: skip
    await conn.execute(Q.move_head, row.tenant_id, row.seq, digest)
    return row.seq


def _stripped(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _held_subject(hold: Any) -> bytes | None:
    """The reference hash of the subject a hold names; None for a tenant-wide hold."""
    return bytes(hold["subject_ref_hash"]) if hold and hold["subject_ref_hash"] else None


def _open(key: DataKey, sealed: bytes, context: KeyContext) -> str:
    """The plaintext; a sealed value that fails its integrity check raises IntegrityError
    (answered as every integrity failure is, never as altered text)."""
    return open_record(key.key, bytes(sealed), context).decode()


def _disclosure_row_hash(row: Any, prev: bytes) -> bytes:
    def optional_bytes(value: Any) -> bytes | None:
        return bytes(value) if value is not None else None

    fields = ChainedDisclosure(
        tenant_id=row["tenant_id"],
        seq=row["seq"],
        id=row["id"],
        recorded_at=row["recorded_at"],
        recorded_by=row["recorded_by"],
        request_id=row["request_id"],
        subject_ref_hash=optional_bytes(row["subject_ref_hash"]),
        subject_id=row["subject_id"],
        hold_id=row["hold_id"],
        recipient=row["recipient"],
        legal_basis=row["legal_basis"],
        reference=row["reference"],
        categories=tuple(row["categories"]),
        description_sealed=optional_bytes(row["description_sealed"]),
        description_key_id=row["description_key_id"],
        disclosed_at=row["disclosed_at"],
        withhold_from_subject_until=row["withhold_from_subject_until"],
    )
    return disclosure_hash(prev, fields)


async def verify_disclosures(
    db: Database, tenant_id: uuid.UUID, anchored: Mapping[int, AnchoredHead] | None = None
) -> ChainWalk:
    """The tenant's disclosure chain, walked (`walk_chain`) against the disclosure heads
    its access-log anchors carry (v4)."""
    return await walk_chain(db, tenant_id, Q, _disclosure_row_hash, anchored)
