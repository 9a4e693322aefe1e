"""Erasure instructions, their receipts, and the keys that verify receipts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from vault.domain.erasures import ErasureStatus
from vault.http.models.common import AwareTime, NextCursor, PageQuery, SubjectRefText, Time
from vault.services.erasures import MAX_TEXT


class ErasureRequestBody(Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Annotated[str, Meta(max_length=MAX_TEXT)] | None = None
    reference: Annotated[str, Meta(max_length=MAX_TEXT)] | None = None


class ErasureRequested(Struct, kw_only=True):
    id: uuid.UUID
    subject_ref_hash: str
    status: ErasureStatus
    requested_at: Time
    not_before: Annotated[
        Time,
        Meta(
            description="requested_at + the grace period (24 h under the rate brake), "
            "at the latest one hour before due_at"
        ),
    ]
    due_at: Annotated[
        Time, Meta(description="requested_at + 30 days or one calendar month, if sooner")
    ]

    @classmethod
    def of(cls, erasure: Mapping[str, Any]) -> ErasureRequested:
        return cls(**_requested(erasure))


def _requested(erasure: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": erasure["id"],
        "subject_ref_hash": erasure["subject_ref_hash"].hex(),
        "status": erasure["status"],
        "requested_at": erasure["requested_at"],
        "not_before": erasure["not_before"],
        "due_at": erasure["due_at"],
    }


class Shredded(Struct):
    category: str
    key_id: str
    destroyed_at: Time


class HeldCategory(Struct):
    category: str
    hold_ids: list[str]


class RetainedCategory(Struct):
    category: str
    until: Time


class Erasure(ErasureRequested, kw_only=True):
    """What was shredded, what is kept, until when and by which hold."""

    completed_at: Annotated[Time | None, Meta(description="null until the status is completed")]
    shredded_at: Annotated[
        Time | None, Meta(description="when the (latest) shred itself committed")
    ]
    cancelled_at: Time | None
    updated_at: Time
    reason: str | None
    reference: str | None
    rate_braked: bool
    shredded: list[Shredded]
    held: list[HeldCategory]
    retained: list[RetainedCategory]

    @classmethod
    def of(cls, erasure: Mapping[str, Any]) -> Erasure:
        items = erasure.get("items", [])
        held: dict[str, set[str]] = {}
        for item in items:
            if item["outcome"] == "held":
                held.setdefault(item["category"], set()).update(
                    str(h) for h in item["hold_ids"] or []
                )
        return cls(
            **_requested(erasure),
            completed_at=erasure["completed_at"],
            shredded_at=erasure["shredded_at"],
            cancelled_at=erasure["cancelled_at"],
            updated_at=erasure["updated_at"],
            reason=erasure["reason"],
            reference=erasure["reference"],
            rate_braked=erasure["braked"],
            shredded=[
                Shredded(i["category"], str(i["key_id"]), i["destroyed_at"])
                for i in items
                if i["outcome"] == "shredded"
            ],
            held=[HeldCategory(c, sorted(ids)) for c, ids in sorted(held.items())],
            retained=[
                RetainedCategory(i["category"], i["kept_until"])
                for i in items
                if i["outcome"] == "retained"
            ],
        )


class ErasurePage(Struct):
    items: list[Erasure]
    next_cursor: NextCursor


class ErasureListQuery(PageQuery, forbid_unknown_fields=True, kw_only=True):
    status: Annotated[ErasureStatus, Meta(description="Only this status")] | None = None
    subject_ref: (
        Annotated[SubjectRefText, Meta(description="Only this subject's erasures")] | None
    ) = None
    updated_since: (
        Annotated[
            AwareTime,
            Meta(
                description="Only erasures whose status or contents changed at or after this "
                "time, oldest change first (updated_at, then id): follow them with next_cursor"
            ),
        ]
        | None
    ) = None


class LedgerHead(Struct):
    """The shred ledger's last entry (sequence, hex SHA-256) when the receipt was issued."""

    seq: int
    head: str


class ErasureReceipt(Struct, kw_only=True):
    """The signed statement. Receipts issued before the ledger head was added lack
    `ledger`."""

    v: Literal[1]
    type: Literal["datavault.erasure-receipt"]
    issuer: Annotated[str, Meta(description="The deployment's public URL")]
    tenant_id: uuid.UUID
    erasure_id: uuid.UUID
    subject_ref_hash: str
    requested_at: Time
    completed_at: Time | None
    final: bool
    shredded: list[Shredded]
    held: list[HeldCategory]
    retained: list[RetainedCategory]
    backups_unreadable_after: Annotated[
        Time | None,
        Meta(
            description="After this no copy of a destroyed key in a backup, WAL or replica "
            "opens (never a past date); null when no root-key epoch is scheduled"
        ),
    ]
    ledger: LedgerHead | UnsetType = UNSET


class SignedReceipt(Struct):
    receipt: ErasureReceipt
    jws: Annotated[
        str | None,
        Meta(
            description="The receipt as a compact JWS (RFC 7515): protected header "
            '{"alg": "Ed25519", "kid": key_id, "typ": "datavault-erasure-receipt"}, payload '
            "the RFC 8785 canonical JSON of receipt; verifies with any JOSE library against "
            "GET /.well-known/jwks.json. null for receipts issued before the JWS existed"
        ),
    ]
    signature: Annotated[
        str,
        Meta(
            description="base64url (no padding) Ed25519 signature over the RFC 8785 "
            "canonical JSON of receipt (kept for receipts issued before the JWS)"
        ),
    ]
    key_id: Annotated[str, Meta(description="kid of the key in GET /.well-known/jwks.json")]
    alg: Literal["Ed25519"]


class Jwk(Struct):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    kid: str
    x: Annotated[str, Meta(description="base64url raw public key, no padding")]
    use: Literal["sig"]
    alg: Annotated[
        Literal["Ed25519"],
        Meta(description="RFC 9864's fully specified name (a JWS of a receipt names it too)"),
    ]


class JwkSet(Struct):
    """Every receipt key, retired ones included."""

    keys: list[Jwk]

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> JwkSet:
        return cls([Jwk(**key) for key in document["keys"]])
