"""OpenAPI paths of disclosures, with the schema of what they answer."""

from __future__ import annotations

from typing import Any

from vault.domain.disclosures import (
    MAX_DESCRIPTION_LENGTH,
    MAX_LEGAL_BASIS_LENGTH,
    MAX_RECIPIENT_LENGTH,
    MAX_REFERENCE_LENGTH,
)
from vault.http.openapi_parts import (
    _NULLABLE_TIME,
    _PAGING,
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
_CATEGORIES = {"type": "array", "items": _STR, "minItems": 1}

DISCLOSURE = {
    "type": "object",
    "required": [
        "id", "subject_ref", "subject_ref_hash", "hold_id", "recipient", "legal_basis",
        "reference", "categories", "description", "description_erased", "disclosed_at",
        "withhold_from_subject_until", "recorded_at", "recorded_by", "seq",
    ],
    "properties": {
        "id": _UUID,
        "subject_ref": {
            **_NULLABLE_STR,
            "description": "while the vault can still decrypt the subject's reference copy "
            "(null after its erasure, or for a subject it never stored)",
        },
        "subject_ref_hash": {**_NULLABLE_STR, "description": "null: no subject named"},
        "hold_id": {"type": ["string", "null"], "format": "uuid"},
        "recipient": _STR,
        "legal_basis": _STR,
        "reference": _STR,
        "categories": _CATEGORIES,
        "description": {
            **_NULLABLE_STR,
            "description": "sealed under the subject's keys: null once they are shredded",
        },
        "description_erased": {
            "type": "boolean",
            "description": "a description was recorded and an erasure has made it unreadable",
        },
        "disclosed_at": _TIME,
        "withhold_from_subject_until": _NULLABLE_TIME,
        "recorded_at": _TIME,
        "recorded_by": {**_UUID, "description": "the API key that recorded it"},
        "seq": {"type": "integer", "description": "its place in the tenant's disclosure chain"},
    },
}  # fmt: skip
DISCLOSURE_RECORD = {
    "type": "object",
    "required": ["recipient", "legal_basis", "reference", "categories", "disclosed_at"],
    "additionalProperties": False,
    "properties": {
        "subject_ref": _STR,
        "hold_id": _UUID,
        "recipient": {"type": "string", "maxLength": MAX_RECIPIENT_LENGTH},
        "legal_basis": {"type": "string", "maxLength": MAX_LEGAL_BASIS_LENGTH},
        "reference": {"type": "string", "maxLength": MAX_REFERENCE_LENGTH},
        "categories": _CATEGORIES,
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION_LENGTH},
        "disclosed_at": _TIME,
        "withhold_from_subject_until": _TIME,
    },
}


def _disclosure_paths() -> dict[str, dict[str, Any]]:
    return {
        "/v1/disclosures": {
            "post": _op(
                "Record that data was handed to a third party (a court, the police, a tax "
                "authority)", scope="compliance", ok=201, body=DISCLOSURE_RECORD,
                answers={201: answer("Recorded", DISCLOSURE,
                                     headers=location("/v1/disclosures/{disclosure_id}"))},
                errors=(400, 413, 415, 422),
                description="Entries are append-only and hash-chained per tenant. Without "
                "subject_ref, a hold_id naming one subject names it. A description is sealed "
                "under the subject's keys (422 for a subject the vault has no keys of) and is "
                "shredded with them by an erasure; the entry itself outlives the erasure "
                "with only subject_ref_hash. disclosed_at may not be in the future; "
                "withhold_from_subject_until must come after it. The subject's export lists "
                "the disclosure once withhold_from_subject_until has passed.",
            ),
            "get": _op(
                "List disclosures, newest disclosed first", scope="compliance",
                ok_schema=_list_page(DISCLOSURE),
                params=[_query("subject_ref", _STR, "Only disclosures about this subject"),
                        _query("hold_id", _UUID, "Only disclosures made under this hold"),
                        _query("since", _TIME, "disclosed_at at or after"),
                        _query("until", _TIME, "disclosed_at before"),
                        *_PAGING],
                errors=(422,),
            ),
        },
        "/v1/disclosures/{disclosure_id}": {
            "parameters": [_path("disclosure_id")],
            "get": _op("One disclosure", scope="compliance", ok_schema=DISCLOSURE,
                       errors=(404,)),
        },
    }  # fmt: skip
