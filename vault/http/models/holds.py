"""Legal holds."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from vault.domain.holds import (
    MAX_NOTE_LENGTH,
    MAX_REFERENCE_LENGTH,
    MAX_RELEASE_REASON_LENGTH,
    RELEASE_REQUEST_LAPSES_AFTER,
    HoldReason,
    release_request_pending,
)
from vault.http.models.common import AwareTime, NextCursor, PageQuery, SubjectRefText, Time

Note = Annotated[str, Meta(max_length=MAX_NOTE_LENGTH)]


class HoldPlacement(Struct, forbid_unknown_fields=True, kw_only=True):
    """No subject_ref: the whole tenant; no categories: all of them."""

    subject_ref: SubjectRefText | None = None
    categories: Annotated[list[str], Meta(min_length=1, description="Known categories")] | None = (
        None
    )
    reason: HoldReason
    reference: Annotated[
        str, Meta(min_length=1, max_length=MAX_REFERENCE_LENGTH, description="Case reference")
    ]
    note: Note | None = None
    expires_at: AwareTime | None = None


class HoldAmendment(Struct, forbid_unknown_fields=True, kw_only=True):
    """Send expires_at (later, or null for none), note, or both."""

    expires_at: AwareTime | UnsetType | None = UNSET
    note: Note | UnsetType | None = UNSET


class HoldRelease(Struct, kw_only=True):
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_RELEASE_REASON_LENGTH)]


class HoldEvent(Struct):
    """A row of the hold's journal: what, who (API key), from where, why."""

    at: Time
    action: str
    api_key_id: uuid.UUID | None
    ip: str | None
    reason: str | None


class Hold(Struct, kw_only=True):
    id: uuid.UUID
    subject_ref: Annotated[
        str | None, Meta(description="Only when placing: the vault keeps only the keyed hash")
    ]
    subject_ref_hash: str | None
    scope: Literal["subject", "tenant"]
    categories: list[str] | None
    reason: HoldReason
    reference: str
    note: str | None
    placed_at: Time
    placed_by: uuid.UUID
    expires_at: Time | None
    released_at: Time | None
    released_by: uuid.UUID | None
    release_requested_by: Annotated[
        uuid.UUID | None, Meta(description="A release waiting for its second person")
    ]
    release_requested_at: Time | None
    release_request_expires_at: Time | None
    active: bool
    events: (
        Annotated[list[HoldEvent], Meta(description="The journal (answers about one hold)")]
        | UnsetType
    ) = UNSET

    @classmethod
    def of(cls, hold: Mapping[str, Any], subject_ref: str | None = None) -> Hold:
        requested_at = hold["release_requested_at"]
        pending = release_request_pending(requested_at, datetime.now(UTC))
        events = hold.get("events")
        return cls(
            id=hold["id"],
            subject_ref=subject_ref,
            subject_ref_hash=hold["subject_ref_hash"].hex() if hold["subject_ref_hash"] else None,
            scope="subject" if hold["subject_ref_hash"] else "tenant",
            categories=hold["categories"],
            reason=hold["reason"],
            reference=hold["reference"],
            note=hold["note"],
            placed_at=hold["placed_at"],
            placed_by=hold["placed_by"],
            expires_at=hold["expires_at"],
            released_at=hold["released_at"],
            released_by=hold["released_by"],
            # A release request waiting for its second person (none once it lapsed).
            release_requested_by=hold["release_requested_by"] if pending else None,
            release_requested_at=requested_at if pending else None,
            release_request_expires_at=(
                requested_at + RELEASE_REQUEST_LAPSES_AFTER if pending else None
            ),
            # dv_hold_in_force (migration 0016), read with the hold.
            active=bool(hold["in_force"]),
            events=UNSET if events is None else [HoldEvent(**e) for e in events],
        )


class HoldPage(Struct):
    items: list[Hold]
    next_cursor: NextCursor


class HoldListQuery(PageQuery, forbid_unknown_fields=True, kw_only=True):
    active: Annotated[bool, Meta(description="Only holds in force")] = False
    subject_ref: (
        Annotated[SubjectRefText, Meta(description="Holds covering this subject")] | None
    ) = None
    reason: Annotated[HoldReason, Meta(description="Only holds with this reason")] | None = None


class CategoryImpact(Struct):
    keys: int
    erasures: int


class HoldImpact(Struct):
    """By category: the keys held erasures keep only because of this hold."""

    categories: dict[str, CategoryImpact]
