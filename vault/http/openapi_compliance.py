"""OpenAPI paths of legal holds and erasures, with the schemas of what they answer."""

from __future__ import annotations

from typing import Any

from vault.http.openapi_parts import (
    _NULLABLE_TIME,
    _PAGING,
    _REF,
    _STR,
    _TIME,
    _UUID,
    _list_page,
    _op,
    _path,
    _query,
    answer,
    location,
)

_NULLABLE_STR = {"type": ["string", "null"]}

HOLD = {
    "type": "object",
    "properties": {
        "id": _UUID,
        "subject_ref": _NULLABLE_STR,
        "subject_ref_hash": _NULLABLE_STR,
        "scope": {"type": "string", "enum": ["subject", "tenant"]},
        "categories": {"type": ["array", "null"], "items": _STR},
        "reason": {
            "type": "string",
            "enum": [
                "billing",
                "fraud_investigation",
                "litigation",
                "law_enforcement",
                "regulatory",
            ],
        },
        "reference": _STR,
        "note": _NULLABLE_STR,
        "placed_at": _TIME,
        "placed_by": _UUID,
        "expires_at": _NULLABLE_TIME,
        "released_at": _NULLABLE_TIME,
        "released_by": _NULLABLE_STR,
        "release_requested_by": _NULLABLE_STR,
        "release_requested_at": _NULLABLE_TIME,
        "release_request_expires_at": _NULLABLE_TIME,
        "active": {"type": "boolean"},
        "events": {"type": "array", "items": {"type": "object"}},
    },
}
HOLD_PLACE = {
    "type": "object",
    "required": ["reason", "reference"],
    "additionalProperties": False,
    "properties": {
        "subject_ref": _STR,
        "categories": {"type": "array", "items": _STR},
        "reason": HOLD["properties"]["reason"],  # type: ignore[index]
        "reference": {"type": "string", "maxLength": 200},
        "note": {"type": "string", "maxLength": 2000},
        "expires_at": _TIME,
    },
}
HOLD_IMPACT = {
    "type": "object",
    "properties": {
        "categories": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"keys": {"type": "integer"}, "erasures": {"type": "integer"}},
            },
        }
    },
}
_REASON_BODY = {
    "type": "object",
    "required": ["reason"],
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
}


def _hold_paths() -> dict[str, dict[str, Any]]:
    hold_id = _path("hold_id")
    return {
        "/v1/holds": {
            "post": _op("Place a legal hold on a subject (or the whole tenant), all or some "
                        "categories", scope="compliance", ok=201, body=HOLD_PLACE,
                        answers={201: answer("Placed", HOLD,
                                             headers=location("/v1/holds/{hold_id}"))},
                        errors=(400, 415, 422)),
            "get": _op("List holds, newest first", scope="compliance", ok_schema=_list_page(HOLD),
                       params=[_query("active", {"type": "boolean"}, "Only active holds"),
                               _query("subject_ref", _STR, "Holds covering this subject"),
                               _query("reason", _STR, "Only holds with this reason"),
                               *_PAGING], errors=(422,)),
        },
        "/v1/holds/{hold_id}": {
            "parameters": [hold_id],
            "get": _op("A hold with its journal", scope="compliance", ok_schema=HOLD,
                       errors=(404,)),
            "patch": _op("Extend the expiry or change the note", scope="compliance",
                         ok_schema=HOLD, errors=(404, 409, 422),
                         description="An expiry can only move later (or be removed), and a "
                         "hold without one cannot be given one: 422 otherwise (that would "
                         "end the hold sooner by one hand; release it instead).",
                         body={"type": "object", "properties": {"expires_at": _TIME,
                                                                "note": _STR}}),
        },
        "/v1/holds/{hold_id}/impact": {
            "parameters": [hold_id],
            "get": _op("What releasing this hold would shred now, by category (counts)",
                       scope="compliance", ok_schema=HOLD_IMPACT, errors=(404,)),
        },
        "/v1/holds/{hold_id}/release": {
            "parameters": [hold_id],
            "post": _op(
                "Release a hold (litigation and law_enforcement: the first call answers 202, "
                "a second, different compliance key releases)", scope="compliance",
                answers={
                    200: answer("Released: released_at and released_by are set; erasures "
                                "waiting on the hold proceed", HOLD),
                    202: answer("Release requested, awaiting a second compliance key "
                                "(litigation, law_enforcement): release_requested_by and "
                                "release_requested_at are set, released_at is null", HOLD),
                },
                body=_REASON_BODY, errors=(400, 404, 409, 413, 415, 422),
                description="409 when the hold is released already, or when the confirming "
                "key is not a second person: it must name another owner, and neither key "
                "may have been created by the other or by a key of the other's owner. A "
                "request lapses after 7 days (release_request_expires_at).",
            ),
            "delete": _op("Withdraw a release request that awaits its second person",
                          scope="compliance", ok_schema=HOLD, errors=(404, 409)),
        },
    }  # fmt: skip


_ERASURE_STATUS = {
    "type": "string",
    "enum": ["scheduled", "in_progress", "completed", "held", "cancelled"],
}
# What POST /v1/subjects/{ref}/erasure answers (vault/http/erasures.py,
# render_erasure(full=False)).
ERASURE_REQUESTED = {
    "type": "object",
    "required": ["id", "subject_ref_hash", "status", "requested_at", "not_before", "due_at"],
    "properties": {
        "id": _UUID,
        "subject_ref_hash": _STR,
        "status": _ERASURE_STATUS,
        "requested_at": _TIME,
        "not_before": _TIME,
        "due_at": _TIME,
    },
}
_SHREDDED = {
    "type": "object",
    "properties": {"category": _STR, "key_id": _STR, "destroyed_at": _TIME},
}
_HELD = {
    "type": "object",
    "properties": {"category": _STR, "hold_ids": {"type": "array", "items": _UUID}},
}
_RETAINED = {"type": "object", "properties": {"category": _STR, "until": _TIME}}
# What an erasure did, as its status and its receipt both report it.
_OUTCOMES = {
    "shredded": {"type": "array", "items": _SHREDDED},
    "held": {"type": "array", "items": _HELD},
    "retained": {"type": "array", "items": _RETAINED},
}
ERASURE = {
    "type": "object",
    "properties": {
        **ERASURE_REQUESTED["properties"],  # type: ignore[dict-item]
        "completed_at": {**_NULLABLE_TIME, "description": "null until the status is completed"},
        "shredded_at": {
            **_NULLABLE_TIME,
            "description": "when the (latest) shred itself committed",
        },
        "cancelled_at": _NULLABLE_TIME,
        "updated_at": _TIME,
        "reason": _NULLABLE_STR,
        "reference": _NULLABLE_STR,
        "rate_braked": {"type": "boolean"},
        **_OUTCOMES,
    },
}
_RECEIPT_FIELDS = {
    "v": {"const": 1},
    "type": {"const": "datavault.erasure-receipt"},
    "issuer": _STR,
    "tenant_id": _UUID,
    "erasure_id": _UUID,
    "subject_ref_hash": _STR,
    "requested_at": _TIME,
    "completed_at": _NULLABLE_TIME,
    "final": {"type": "boolean"},
    **_OUTCOMES,
    "backups_unreadable_after": {
        **_NULLABLE_TIME,
        "description": "after this no copy of a destroyed key in a backup, WAL or replica "
        "opens (never a past date); null when no root-key epoch is scheduled",
    },
    "ledger": {
        "type": "object",
        "required": ["seq", "head"],
        "properties": {"seq": {"type": "integer"}, "head": _STR},
        "description": "the shred ledger's last entry (sequence, hex SHA-256) at issue",
    },
}
SIGNED_RECEIPT = {
    "type": "object",
    "required": ["receipt", "jws", "signature", "key_id", "alg"],
    "properties": {
        "receipt": {
            "type": "object",
            # Receipts issued before the ledger head was added lack `ledger`.
            "required": [name for name in _RECEIPT_FIELDS if name != "ledger"],
            "properties": _RECEIPT_FIELDS,
        },
        "jws": {
            "type": ["string", "null"],
            "description": "the receipt as a compact JWS (RFC 7515): protected header "
            '{"alg": "Ed25519", "kid": key_id, "typ": "datavault-erasure-receipt"}, payload '
            "the RFC 8785 canonical JSON of receipt; verifies with any JOSE library against "
            "GET /.well-known/jwks.json. null for receipts issued before the JWS existed",
        },
        "signature": {
            **_STR,
            "description": "base64url (no padding) Ed25519 signature over the RFC 8785 "
            "canonical JSON of receipt (kept for receipts issued before the JWS)",
        },
        "key_id": {**_STR, "description": "kid of the key in GET /.well-known/jwks.json"},
        "alg": {"const": "Ed25519"},
    },
}


def _erasure_paths() -> dict[str, dict[str, Any]]:
    erasure_id = _path("erasure_id")
    return {
        "/v1/subjects/{ref}/erasure": {
            "parameters": [_REF],
            "post": _op(
                "Erase a subject: 202 scheduled; 200 with the open erasure if one exists",
                scope="erasure",
                answers={
                    202: answer("Scheduled", ERASURE_REQUESTED,
                                headers=location("/v1/erasures/{erasure_id}")),
                    200: answer("The subject already has an open erasure: that one",
                                ERASURE_REQUESTED),
                },
                body={"type": "object", "additionalProperties": False,
                      "properties": {"reason": {"type": "string", "maxLength": 500},
                                     "reference": {"type": "string", "maxLength": 500}}},
                body_required=False, errors=(400, 413, 415, 422),
                description="The body is optional; when sent, it is application/json.",
            ),
        },
        "/v1/erasures": {
            "get": _op("List erasures, newest first", scope=("erasure", "compliance"),
                       ok_schema=_list_page(ERASURE),
                       params=[_query("status", _ERASURE_STATUS, "Only this status"),
                               _query("subject_ref", _STR, "Only this subject's erasures "
                                      "(by reference; the vault matches its keyed hash)"),
                               *_PAGING],
                       errors=(422,)),
        },
        "/v1/erasures/{erasure_id}": {
            "parameters": [erasure_id],
            "get": _op("What was shredded, what is held and by which hold",
                       scope=("erasure", "compliance"), ok_schema=ERASURE, errors=(404,)),
        },
        "/v1/erasures/{erasure_id}/receipt": {
            "parameters": [erasure_id],
            "get": _op("The signed receipt: final once completed, interim while held; 409 before",
                       scope=("erasure", "compliance"), ok_schema=SIGNED_RECEIPT,
                       errors=(404, 409)),
        },
        "/v1/erasures/{erasure_id}/cancel": {
            "parameters": [erasure_id],
            "post": _op("Cancel during the grace period (409 after not_before)",
                        scope="erasure", ok_schema=ERASURE, errors=(404, 409)),
        },
        "/v1/erasures/{erasure_id}/release-brake": {
            "parameters": [erasure_id],
            "post": _op("Let an erasure held back by the rate brake run after the tenant's "
                        "grace period instead of 24 h (409 when it is not braked)",
                        scope="admin", ok_schema=ERASURE, errors=(404, 409)),
        },
    }  # fmt: skip
