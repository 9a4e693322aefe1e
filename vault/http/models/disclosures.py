"""Disclosures: records that data was handed to a third party (compliance scope)."""

from __future__ import annotations

import uuid
from typing import Annotated

from msgspec import Meta, Struct

from vault.domain.disclosures import (
    MAX_DESCRIPTION_LENGTH,
    MAX_LEGAL_BASIS_LENGTH,
    MAX_RECIPIENT_LENGTH,
    MAX_REFERENCE_LENGTH,
)
from vault.http.models.common import AwareTime, NextCursor, PageQuery, SubjectRefText, Time
from vault.services.disclosures import Disclosure as StoredDisclosure

Categories = Annotated[list[str], Meta(min_length=1, description="Known categories")]


class DisclosureRecord(Struct, forbid_unknown_fields=True, kw_only=True):
    """Checked field by field by the disclosure service, every wrong field named at once
    (422 with `errors`)."""

    subject_ref: SubjectRefText | None = None
    hold_id: Annotated[
        uuid.UUID, Meta(description="Without subject_ref, a hold naming one subject names it")
    ] | None = None  # fmt: skip
    recipient: Annotated[str, Meta(min_length=1, max_length=MAX_RECIPIENT_LENGTH)]
    legal_basis: Annotated[str, Meta(min_length=1, max_length=MAX_LEGAL_BASIS_LENGTH)]
    reference: Annotated[str, Meta(min_length=1, max_length=MAX_REFERENCE_LENGTH)]
    categories: Categories
    description: Annotated[
        str,
        Meta(
            max_length=MAX_DESCRIPTION_LENGTH,
            description="Sealed under the subject's keys (422 for a subject the vault has no "
            "keys of), shredded with them by an erasure",
        ),
    ] | None = None  # fmt: skip
    disclosed_at: Annotated[AwareTime, Meta(description="Not in the future")]
    withhold_from_subject_until: Annotated[
        AwareTime, Meta(description="After disclosed_at; until then the export leaves it out")
    ] | None = None  # fmt: skip


class Disclosure(Struct, kw_only=True):
    id: uuid.UUID
    subject_ref: Annotated[
        str | None,
        Meta(
            description="While the vault can still decrypt the subject's reference copy "
            "(null after its erasure, or for a subject it never stored)"
        ),
    ]
    subject_ref_hash: Annotated[str | None, Meta(description="null: no subject named")]
    hold_id: uuid.UUID | None
    recipient: str
    legal_basis: str
    reference: str
    categories: list[str]
    description: Annotated[
        str | None, Meta(description="Sealed under the subject's keys: null once shredded")
    ]
    description_erased: Annotated[
        bool, Meta(description="A description was recorded and an erasure made it unreadable")
    ]
    disclosed_at: Time
    withhold_from_subject_until: Time | None
    recorded_at: Time
    recorded_by: Annotated[uuid.UUID, Meta(description="The API key that recorded it")]
    seq: Annotated[int, Meta(description="Its place in the tenant's disclosure chain")]

    @classmethod
    def of(cls, disclosure: StoredDisclosure) -> Disclosure:
        ref, ref_hash = disclosure.subject_ref, disclosure.subject_ref_hash
        return cls(
            id=disclosure.id, subject_ref=ref.reveal() if ref is not None else None,
            subject_ref_hash=ref_hash.hex() if ref_hash is not None else None,
            hold_id=disclosure.hold_id, recipient=disclosure.recipient,
            legal_basis=disclosure.legal_basis, reference=disclosure.reference,
            categories=list(disclosure.categories), description=disclosure.description,
            description_erased=disclosure.description_erased,
            disclosed_at=disclosure.disclosed_at,
            withhold_from_subject_until=disclosure.withhold_from_subject_until,
            recorded_at=disclosure.recorded_at, recorded_by=disclosure.recorded_by,
            seq=disclosure.seq,
        )  # fmt: skip


class DisclosurePage(Struct):
    items: list[Disclosure]
    next_cursor: NextCursor


class DisclosureListQuery(PageQuery, forbid_unknown_fields=True, kw_only=True):
    subject_ref: (
        Annotated[SubjectRefText, Meta(description="Only disclosures about this subject")] | None
    ) = None
    hold_id: (
        Annotated[uuid.UUID, Meta(description="Only disclosures made under this hold")] | None
    ) = None
    since: Annotated[AwareTime, Meta(description="disclosed_at at or after")] | None = None
    until: Annotated[AwareTime, Meta(description="disclosed_at before")] | None = None
