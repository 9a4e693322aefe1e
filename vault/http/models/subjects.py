"""Subjects, their artefacts and records."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from vault.http.models.common import NextCursor, PageQuery, Time
from vault.services.artefacts import Artefact as StoredArtefact
from vault.services.records import RecordVersion
from vault.services.subject_status import MAX_RESTRICTION_REASON_LENGTH
from vault.services.subjects import SubjectSummary

CategoryName = Annotated[
    str, Meta(description="recording, transcript, account, billing, support, or the tenant's own")
]


class CategoryCounts(Struct):
    artefacts: int
    records: int
    bytes: int


class Subject(Struct):
    """A data subject: `ref` and `subject_ref` are the reference the request named."""

    ref: str
    subject_ref: str
    subject_ref_hash: Annotated[str, Meta(description="The reference's keyed hash (hex)")]
    status: Literal["active", "restricted", "erased"]
    created_at: Time
    restricted_at: Time | None
    categories: dict[str, CategoryCounts]

    @classmethod
    def of(cls, summary: SubjectSummary, ref: str) -> Subject:
        subject = summary.subject
        return cls(
            ref, ref, subject.ref_hash.hex(), summary.status,  # type: ignore[arg-type]
            subject.created_at, subject.restricted_at,
            {name: CategoryCounts(**counts) for name, counts in summary.categories.items()},
        )  # fmt: skip


class RestrictionRequest(Struct, kw_only=True):
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_RESTRICTION_REASON_LENGTH)]


class Artefact(Struct):
    id: uuid.UUID
    subject_ref: str
    subject_ref_hash: str
    category: str
    content_type: str
    filename: str | None
    size: int
    sha256: Annotated[str, Meta(description="Lower-case hex SHA-256 of the plaintext")]
    created_at: Time
    expires_at: Annotated[Time | None, Meta(description="When retention shreds it")]

    @classmethod
    def of(cls, artefact: StoredArtefact, ref: str) -> Artefact:
        return cls(
            artefact.id, ref, artefact.subject.ref_hash.hex(), artefact.category,
            artefact.content_type, artefact.filename, artefact.size, artefact.sha256,
            artefact.created_at, artefact.expires_at,
        )  # fmt: skip


class ArtefactPage(Struct):
    items: list[Artefact]
    next_cursor: NextCursor


class ArtefactListQuery(PageQuery, forbid_unknown_fields=True, kw_only=True):
    category: CategoryName | None = None


class UploadQuery(Struct, forbid_unknown_fields=True, kw_only=True):
    category: CategoryName


class Record(Struct):
    name: str
    category: str
    version: int
    updated_at: Time

    @classmethod
    def of(cls, record: RecordVersion) -> Record:
        return cls(record.name, record.category, record.version, record.updated_at)


class RecordPage(Struct):
    items: list[Record]
    next_cursor: NextCursor


class RecordPutQuery(Struct, forbid_unknown_fields=True, kw_only=True):
    category: (
        Annotated[
            str,
            Meta(description="Required on create; a record keeps its category (another one: 409)"),
        ]
        | None
    ) = None


class KeptVersion(Struct):
    """A version a legal hold kept when the record was replaced or deleted."""

    version: int
    updated_at: Time
    superseded_at: Time | None
    hold_ids: list[uuid.UUID]

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> KeptVersion:
        return cls(row["version"], row["created_at"], row["superseded_at"], list(row["hold_ids"]))


class KeptVersionList(Struct):
    items: list[KeptVersion]
    next_cursor: NextCursor
