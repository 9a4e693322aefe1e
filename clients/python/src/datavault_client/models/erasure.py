"""Answers about erasures and their receipts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from datavault_client._fields import Fields

# An erasure's statuses (API.md "Erasure"). `held` is done except for what holds or
# statutory retention keep; it becomes `completed` when the last of them goes.
SCHEDULED = "scheduled"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
HELD = "held"
CANCELLED = "cancelled"
# Statuses a receipt exists for: final once completed, interim while held.
WITH_RECEIPT = frozenset({COMPLETED, HELD})


@dataclass(frozen=True)
class ErasureRequested:
    """The answer to an erasure request. `created`: a new erasure (202); False when the
    subject's open erasure answered (200)."""

    id: str
    subject_ref_hash: str
    status: str
    requested_at: datetime
    not_before: datetime
    due_at: datetime
    created: bool

    @classmethod
    def parse(cls, f: Fields, created: bool) -> ErasureRequested:
        return cls(
            id=f.text("id"),
            subject_ref_hash=f.text("subject_ref_hash"),
            status=f.text("status"),
            requested_at=f.time("requested_at"),
            not_before=f.time("not_before"),
            due_at=f.time("due_at"),
            created=created,
        )


@dataclass(frozen=True)
class ShreddedKey:
    category: str
    key_id: str
    destroyed_at: datetime | None


@dataclass(frozen=True)
class HeldCategory:
    category: str
    hold_ids: list[str]


@dataclass(frozen=True)
class RetainedCategory:
    """Kept by statutory retention (`keep_at_least_days`) until `until`."""

    category: str
    until: datetime | None


@dataclass(frozen=True)
class Erasure:
    """An erasure instruction and what became of it. `updated_at` moves whenever its
    status or contents change: follow erasures by it (`Erasures.follow`)."""

    id: str
    subject_ref_hash: str
    status: str
    requested_at: datetime
    not_before: datetime
    due_at: datetime
    completed_at: datetime | None
    shredded_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime
    reason: str | None
    reference: str | None
    rate_braked: bool
    shredded: list[ShreddedKey]
    held: list[HeldCategory]
    retained: list[RetainedCategory]

    @property
    def finished(self) -> bool:
        """Nothing more will happen without a hold or retention ending."""
        return self.status in (COMPLETED, HELD, CANCELLED)

    @classmethod
    def parse(cls, f: Fields) -> Erasure:
        return cls(
            id=f.text("id"),
            subject_ref_hash=f.text("subject_ref_hash"),
            status=f.text("status"),
            requested_at=f.time("requested_at"),
            not_before=f.time("not_before"),
            due_at=f.time("due_at"),
            completed_at=f.opt_time("completed_at"),
            shredded_at=f.opt_time("shredded_at"),
            cancelled_at=f.opt_time("cancelled_at"),
            updated_at=f.time("updated_at"),
            reason=f.opt_text("reason"),
            reference=f.opt_text("reference"),
            rate_braked=f.opt_flag("rate_braked"),
            shredded=[
                ShreddedKey(s.text("category"), s.text("key_id"), s.opt_time("destroyed_at"))
                for s in f.objects("shredded")
            ],
            held=[
                HeldCategory(h.text("category"), h.strings("hold_ids")) for h in f.objects("held")
            ],
            retained=[
                RetainedCategory(r.text("category"), r.opt_time("until"))
                for r in f.objects("retained")
            ],
        )


@dataclass(frozen=True)
class ReceiptDocument:
    """`GET /v1/erasures/{id}/receipt` as the vault answered it. Keep `document` (the
    whole JSON) to verify later, offline: `verify_receipt(document, jwks)`."""

    receipt: dict[str, Any]
    jws: str | None
    signature: str | None
    key_id: str
    alg: str
    document: dict[str, Any]

    @property
    def final(self) -> bool:
        return self.receipt.get("final") is True

    @classmethod
    def parse(cls, f: Fields) -> ReceiptDocument:
        return cls(
            receipt=f.object("receipt").raw(),
            jws=f.opt_text("jws"),
            signature=f.opt_text("signature"),
            key_id=f.text("key_id"),
            alg=f.text("alg"),
            document=f.raw(),
        )
