"""Disclosures (API.md "Disclosures"): a record that a subject's data was handed to a third
party, what makes one valid, and its row in the tenant's disclosure chain.

A disclosure is evidence: entries are only ever appended, each hashed onto the one before
it (the access log's row encoding, `vault/domain/access_chain.py`), so a changed, removed
or reordered entry is found by `datavault audit verify`, and the chain's head rides in
the access-log anchors, so a cut-off tail is found too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vault.domain.access_chain import chain_digest
from vault.domain.categories import check_category_list

# The recipient is an authority or a company, the legal basis a short citation ("Art.
# 6(1)(c) GDPR; court order 2024/118"): a line each, not a letter.
MAX_RECIPIENT_LENGTH = 200
MAX_LEGAL_BASIS_LENGTH = 200
# As a hold's case reference and note (vault/domain/holds.py).
MAX_REFERENCE_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
# A disclosure records something that has happened: disclosed_at may be at most this far
# ahead of the vault's clock (the recording system's clock may run a little fast).
MAX_CLOCK_SKEW = timedelta(minutes=5)

_CHAIN_DOMAIN = b"datavault.disclosure.v1"


@dataclass(frozen=True)
class DisclosureTerms:
    """What was disclosed, to whom, on what basis and when, checked."""

    recipient: str
    legal_basis: str
    reference: str
    categories: tuple[str, ...]
    description: str | None
    disclosed_at: datetime
    withhold_from_subject_until: datetime | None


def _line(value: object, name: str, limit: int) -> str | None:
    """None when `value` is a string of 1 to `limit` characters after trimming."""
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
        return f"{name} must be 1 to {limit} characters"
    return None


def disclosure_terms(
    values: Mapping[str, object], known_categories: Sequence[str], now: datetime
) -> tuple[DisclosureTerms | None, dict[str, str]]:
    """The terms, or every field's error at once (field -> message), so a form can show
    each beside its field. `values` holds the fields of API.md's body, the times already
    parsed (a datetime, or None when not given); `known_categories`: the tenant's."""
    errors: dict[str, str] = {}
    for name, limit in (
        ("recipient", MAX_RECIPIENT_LENGTH),
        ("legal_basis", MAX_LEGAL_BASIS_LENGTH),
        ("reference", MAX_REFERENCE_LENGTH),
    ):
        problem = _line(values.get(name), name, limit)
        if problem:
            errors[name] = problem
    categories = check_category_list(values.get("categories"), known_categories)
    if categories is None:
        errors["categories"] = "categories must be a non-empty list of known categories"
    description = values.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH
    ):
        errors["description"] = f"description must be at most {MAX_DESCRIPTION_LENGTH} characters"
    disclosed_at = values.get("disclosed_at")
    if not isinstance(disclosed_at, datetime):
        errors.setdefault("disclosed_at", "disclosed_at is required")
    elif disclosed_at > now + MAX_CLOCK_SKEW:
        errors["disclosed_at"] = "disclosed_at must not be in the future"
    withhold = values.get("withhold_from_subject_until")
    if withhold is not None and (
        not isinstance(withhold, datetime)
        or (isinstance(disclosed_at, datetime) and withhold <= disclosed_at)
    ):
        errors.setdefault(
            "withhold_from_subject_until", "withhold_from_subject_until must be after disclosed_at"
        )
    if errors:
        return None, errors
    assert isinstance(disclosed_at, datetime) and categories is not None
    assert withhold is None or isinstance(withhold, datetime)
    return (
        DisclosureTerms(
            recipient=str(values["recipient"]).strip(),
            legal_basis=str(values["legal_basis"]).strip(),
            reference=str(values["reference"]).strip(),
            categories=categories,
            description=description.strip() or None if isinstance(description, str) else None,
            disclosed_at=disclosed_at,
            withhold_from_subject_until=withhold,
        ),
        {},
    )


def shown_to_subject(withhold_from_subject_until: datetime | None, now: datetime) -> bool:
    """API.md: a disclosure appears in the subject's export once this date has passed."""
    return withhold_from_subject_until is None or withhold_from_subject_until <= now


@dataclass(frozen=True)
class ChainedDisclosure:
    """Every column of a disclosure the chain covers: all but the hashes themselves. The
    description is covered as sealed bytes, so the chain still verifies once an erasure
    has shredded the key that opens it."""

    tenant_id: uuid.UUID
    seq: int
    id: uuid.UUID
    recorded_at: datetime
    recorded_by: uuid.UUID
    request_id: str
    subject_ref_hash: bytes | None
    subject_id: uuid.UUID | None
    hold_id: uuid.UUID | None
    recipient: str
    legal_basis: str
    reference: str
    categories: tuple[str, ...]
    description_sealed: bytes | None
    description_key_id: uuid.UUID | None
    disclosed_at: datetime
    withhold_from_subject_until: datetime | None


def disclosure_hash(prev_hash: bytes, row: ChainedDisclosure) -> bytes:
    return chain_digest(
        _CHAIN_DOMAIN,
        prev_hash,
        (
            row.tenant_id,
            row.seq,
            row.id,
            row.recorded_at,
            row.recorded_by,
            row.request_id,
            row.subject_ref_hash,
            row.subject_id,
            row.hold_id,
            row.recipient,
            row.legal_basis,
            row.reference,
            # Category names are slugs ([a-z0-9_-]), so a comma separates them unambiguously.
            ",".join(row.categories),
            row.description_sealed,
            row.description_key_id,
            row.disclosed_at,
            row.withhold_from_subject_until,
        ),
    )
