"""Legal-hold rules that need no database: reasons, who may end a hold, how its expiry
may change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from vault.errors import InvalidInput


class HoldReason(StrEnum):
    BILLING = "billing"
    FRAUD_INVESTIGATION = "fraud_investigation"
    LITIGATION = "litigation"
    LAW_ENFORCEMENT = "law_enforcement"
    REGULATORY = "regulatory"


class HoldAction(StrEnum):
    """What a hold's journal records (hold_events.action)."""

    PLACED = "placed"
    EXTENDED = "extended"
    ANNOTATED = "annotated"
    RELEASE_REQUESTED = "release_requested"
    RELEASE_WITHDRAWN = "release_withdrawn"
    RELEASED = "released"
    EXPIRED = "expired"


# DESIGN.md: releasing these takes two people (the first asks, the second confirms).
TWO_KEY_RELEASE = frozenset({HoldReason.LITIGATION, HoldReason.LAW_ENFORCEMENT})
# DESIGN.md: a release request lapses after 7 days.
RELEASE_REQUEST_LAPSES_AFTER = timedelta(days=7)

MAX_REFERENCE_LENGTH = 200
MAX_NOTE_LENGTH = 2000
MAX_RELEASE_REASON_LENGTH = 1000


def check_new_expiry(current: datetime | None, new: datetime | None) -> None:
    """API.md: an expiry can only move later, and a hold without one cannot get one.
    Either would end the hold sooner by one hand: that is a release (two people for
    litigation and law enforcement). Removing an expiry moves it later, to never."""
    if new is None:
        return
    if current is None:
        raise InvalidInput(
            "a hold without an expiry cannot be given one; release it instead",
            field="expires_at",
        )
    if new < current:
        raise InvalidInput(
            "expires_at can only move later; release the hold instead", field="expires_at"
        )


def release_request_pending(requested_at: datetime | None, now: datetime) -> bool:
    """Whether a release request is still waiting for its second person."""
    return requested_at is not None and now < requested_at + RELEASE_REQUEST_LAPSES_AFTER


@dataclass(frozen=True)
class KeyHolder:
    """An API key as the two-person rule sees it: who holds it and who made it."""

    key_id: uuid.UUID
    owner: str | None
    created_by: uuid.UUID | None
    creator_owner: str | None  # the owner of the key that created this one
    revoked: bool


def second_person_refusal(requester: KeyHolder, confirmer: KeyHolder) -> str | None:
    """Why `confirmer` may not confirm `requester`'s release request, or None if it may.

    DESIGN.md: the confirming key must have another owner, and neither key may have been
    created by the other. Going one step further, neither key may have been created by a
    key of the other's owner: whoever mints a key has seen its secret, so a person who
    created the other key could otherwise confirm their own request. (Owners are declared
    by the admin who mints a key; the journal names both keys, so a false one is
    attributable.)"""
    if requester.revoked:
        return "the key that asked for this release was revoked since; ask again"
    if requester.owner is None or confirmer.owner is None:
        return "two-person releases need keys that name their owner"
    if confirmer.key_id == requester.key_id or confirmer.owner == requester.owner:
        return "a second person (a key of another owner) must confirm this release"
    if requester.key_id == confirmer.created_by or confirmer.key_id == requester.created_by:
        return "a key may not confirm a release asked by the key that created it, or vice versa"
    if requester.owner == confirmer.creator_owner or confirmer.owner == requester.creator_owner:
        return "a key may not confirm a release asked by its creator's owner, or vice versa"
    return None
