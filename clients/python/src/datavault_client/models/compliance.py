"""Answers about legal holds, disclosures and the access log (compliance scope)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from datavault_client._fields import Fields

# A hold's reasons (API.md "Legal holds"). Releasing a litigation or law-enforcement
# hold takes two people.
HOLD_REASONS = frozenset(
    {"billing", "fraud_investigation", "litigation", "law_enforcement", "regulatory"}
)


@dataclass(frozen=True)
class HoldEvent:
    at: datetime
    action: str
    api_key_id: str | None
    ip: str | None
    reason: str | None


@dataclass(frozen=True)
class Hold:
    """A legal hold. `subject_ref` only in the answer that placed it (the vault keeps
    only the keyed hash); `categories` None = all; `active`: in force now. A release
    waiting for its second person shows in `release_requested_*`."""

    id: str
    subject_ref: str | None
    subject_ref_hash: str | None
    scope: str
    categories: list[str] | None
    reason: str
    reference: str
    note: str | None
    placed_at: datetime
    placed_by: str | None
    expires_at: datetime | None
    released_at: datetime | None
    released_by: str | None
    release_requested_by: str | None
    release_requested_at: datetime | None
    release_request_expires_at: datetime | None
    active: bool
    events: list[HoldEvent]

    @classmethod
    def parse(cls, f: Fields) -> Hold:
        return cls(
            id=f.text("id"),
            subject_ref=f.opt_text("subject_ref"),
            subject_ref_hash=f.opt_text("subject_ref_hash"),
            scope=f.text("scope"),
            categories=f.opt_strings("categories"),
            reason=f.text("reason"),
            reference=f.text("reference"),
            note=f.opt_text("note"),
            placed_at=f.time("placed_at"),
            placed_by=f.opt_text("placed_by"),
            expires_at=f.opt_time("expires_at"),
            released_at=f.opt_time("released_at"),
            released_by=f.opt_text("released_by"),
            release_requested_by=f.opt_text("release_requested_by"),
            release_requested_at=f.opt_time("release_requested_at"),
            release_request_expires_at=f.opt_time("release_request_expires_at"),
            active=f.flag("active"),
            events=[
                HoldEvent(
                    e.time("at"),
                    e.text("action"),
                    e.opt_text("api_key_id"),
                    e.opt_text("ip"),
                    e.opt_text("reason"),
                )
                for e in f.objects("events")
            ],
        )


@dataclass(frozen=True)
class HoldRelease:
    """What a release call did: `released` (200), or a two-person release requested and
    waiting for a compliance key of another owner (202)."""

    released: bool
    hold: Hold


@dataclass(frozen=True)
class CategoryImpact:
    keys: int
    erasures: int


@dataclass(frozen=True)
class Disclosure:
    """A record that data was handed to a third party. Append-only; after the subject's
    erasure only `subject_ref_hash` names them (`description_erased`)."""

    id: str
    subject_ref: str | None
    subject_ref_hash: str | None
    hold_id: str | None
    recipient: str
    legal_basis: str
    reference: str
    categories: list[str]
    description: str | None
    description_erased: bool
    disclosed_at: datetime
    withhold_from_subject_until: datetime | None
    recorded_at: datetime
    recorded_by: str | None
    seq: int | None

    @classmethod
    def parse(cls, f: Fields) -> Disclosure:
        return cls(
            id=f.text("id"),
            subject_ref=f.opt_text("subject_ref"),
            subject_ref_hash=f.opt_text("subject_ref_hash"),
            hold_id=f.opt_text("hold_id"),
            recipient=f.text("recipient"),
            legal_basis=f.text("legal_basis"),
            reference=f.text("reference"),
            categories=f.strings("categories"),
            description=f.opt_text("description"),
            description_erased=f.opt_flag("description_erased"),
            disclosed_at=f.time("disclosed_at"),
            withhold_from_subject_until=f.opt_time("withhold_from_subject_until"),
            recorded_at=f.time("recorded_at"),
            recorded_by=f.opt_text("recorded_by"),
            seq=f.opt_integer("seq"),
        )


@dataclass(frozen=True)
class AccessLogEntry:
    """One request the vault served. `ip` may be truncated (a CIDR) by retention."""

    at: datetime
    api_key_id: str | None
    key_prefix: str | None
    ip: str | None
    method: str
    route: str
    status: int
    subject_ref_hash: str | None
    artefact_id: str | None
    bytes: int
    request_id: str | None

    @classmethod
    def parse(cls, f: Fields) -> AccessLogEntry:
        return cls(
            at=f.time("at"),
            api_key_id=f.opt_text("api_key_id"),
            key_prefix=f.opt_text("key_prefix"),
            ip=f.opt_text("ip"),
            method=f.text("method"),
            route=f.text("route"),
            status=f.integer("status"),
            subject_ref_hash=f.opt_text("subject_ref_hash"),
            artefact_id=f.opt_text("artefact_id"),
            bytes=f.opt_integer("bytes") or 0,
            request_id=f.opt_text("request_id"),
        )
