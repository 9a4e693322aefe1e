"""Legal-hold rules that need no database: reasons, who may end a hold, how its expiry
may change."""

from __future__ import annotations

import unicodedata
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
    """An API key as the two-person rule sees it: who holds it, and its lineage: the key
    itself and every key that created it, back to one the operator issued (each with
    its owner)."""

    key_id: uuid.UUID
    owner: str | None
    revoked: bool
    expired: bool
    lineage_ids: frozenset[uuid.UUID]
    lineage_owners: frozenset[str]


# Default-ignorable code points outside the format category (Cf): they change nothing a
# reader of the journal or the console sees.
_INVISIBLE_OUTSIDE_CF = frozenset(
    [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0x180B, 0x1810), *range(0xFE00, 0xFE10)]
)


def person(owner: str) -> str:
    """The person an owner names, as the two-person rule compares owners: a name or an
    address typed with other case, other spaces, another Unicode spelling (composed or
    decomposed, full-width) or with invisible characters (zero-width, soft hyphen, bidi
    marks) is the same person (red teams 17 and 21: "kim@example.test" and
    "Kim@Example.test " were two, then "kim\u200b@example.test"). NFKC, case folded,
    NFKC again (Unicode's caseless match), invisible characters dropped, whitespace
    trimmed and collapsed. Letters that only look alike in another script are not folded:
    they are other names."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", owner).casefold())
    visible = "".join(
        c for c in folded if unicodedata.category(c) != "Cf" and ord(c) not in _INVISIBLE_OUTSIDE_CF
    )
    return " ".join(visible.split())


def _people(owners: frozenset[str]) -> frozenset[str]:
    return frozenset(person(owner) for owner in owners)


def second_person_refusal(requester: KeyHolder, confirmer: KeyHolder) -> str | None:
    """Why `confirmer` may not confirm `requester`'s release request, or None if it may.

    DESIGN.md: the confirming key must have another owner, and neither key may have been
    created by the other. Whoever mints a key has seen its secret and could mint another
    in anyone's name, so "created by" is followed to the end: the two keys' lineages (the
    keys that created them, at any depth, and their owners) must not meet. Keys one admin
    minted for two officers are one person's keys; two officers' keys are two people when
    they descend from admin keys the operator issued to different people (`datavault
    api-key create`). Owners are declared by whoever mints a key; the journal names both
    keys, so a false one is attributable."""
    if requester.revoked or requester.expired:
        return "the key that asked for this release was revoked or has expired since; ask again"
    if requester.owner is None or confirmer.owner is None:
        return "two-person releases need keys that name their owner"
    if confirmer.key_id == requester.key_id or person(confirmer.owner) == person(requester.owner):
        return "a second person (a key of another owner) must confirm this release"
    if requester.lineage_ids & confirmer.lineage_ids or (
        _people(requester.lineage_owners) & _people(confirmer.lineage_owners)
    ):
        return (
            "the two keys share a creator (a key, or a person, that made both could act as "
            "both): a second person needs a key of an independent lineage"
        )
    return None
