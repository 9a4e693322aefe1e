"""OpenAPI paths of the subject-facing API: artefacts, records, subjects, holds, erasures."""

from __future__ import annotations

from typing import Any

from vault.http.openapi_parts import (
    _PAGING,
    _REF,
    _STR,
    _TIME,
    _UUID,
    _list_page,
    _op,
    _path,
    _query,
)

ARTEFACT = {
    "type": "object",
    "properties": {
        "id": _UUID,
        "subject_ref": _STR,
        "subject_ref_hash": _STR,
        "category": _STR,
        "content_type": _STR,
        "filename": {"type": ["string", "null"]},
        "size": {"type": "integer"},
        "sha256": _STR,
        "created_at": _TIME,
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
RECORD = {
    "type": "object",
    "properties": {
        "name": _STR,
        "category": _STR,
        "version": {"type": "integer"},
        "updated_at": _TIME,
    },
}
SUBJECT = {
    "type": "object",
    "properties": {
        "ref": _STR,
        "subject_ref": _STR,
        "subject_ref_hash": _STR,
        "status": {"type": "string", "enum": ["active", "restricted", "erased"]},
        "created_at": _TIME,
        "restricted_at": {"type": ["string", "null"], "format": "date-time"},
        "categories": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}


def _subject_paths() -> dict[str, dict[str, Any]]:
    category = _query(
        "category", _STR, "recording, transcript, account, billing, support, or the tenant's own"
    )
    return {
        "/v1/subjects/{ref}/artefacts": {
            "parameters": [_REF],
            "post": _op(
                "Upload an artefact (raw body, streamed; Content-Length or chunked)",
                scope="ingest", ok=201, ok_schema=ARTEFACT, params=[category],
                errors=(400, 403, 413, 422),
                description="Optional X-Filename (RFC 8187 for non-ASCII). Creates the subject.",
            ),
            "get": _op("List the subject's artefacts, newest first", scope="read",
                       params=[category, *_PAGING], ok_schema=_list_page(ARTEFACT),
                       errors=(404, 422)),
        },
        "/v1/subjects/{ref}/artefacts/{artefact_id}": {
            "parameters": [_REF, _path("artefact_id")],
            "get": _op("An artefact's metadata", scope="read", ok_schema=ARTEFACT,
                       errors=(404, 410)),
            "delete": _op("Crypto-shred an artefact; its blob is removed within 5 minutes",
                          scope="ingest", ok=204, errors=(404, 409, 410)),
        },
        "/v1/subjects/{ref}/artefacts/{artefact_id}/content": {
            "parameters": [_REF, _path("artefact_id")],
            "get": _op(
                "The plaintext, streamed; single byte ranges give 206", scope="read",
                errors=(404, 410, 416),
                description="HEAD works too. ETag and Accept-Ranges are set.",
            ),
        },
        "/v1/subjects/{ref}/records": {
            "parameters": [_REF],
            "get": _op("List the subject's records", scope="read", params=_PAGING,
                       ok_schema=_list_page(RECORD), errors=(404, 422)),
        },
        "/v1/subjects/{ref}/records/{name}": {
            "parameters": [_REF, _path("name")],
            "put": _op(
                "Create (201) or replace (200) a record: any JSON value, at most 1 MiB",
                scope="ingest", ok=201, ok_schema=RECORD, params=[category],
                body={"description": "any JSON value"}, errors=(400, 409, 413, 415, 422),
                description="Replacing shreds the previous version unless a hold covers it.",
            ),
            "get": _op("The record's JSON value as stored", scope="read", errors=(404, 410)),
            "delete": _op("Crypto-shred the record", scope="ingest", ok=204,
                          errors=(404, 409, 410)),
        },
        "/v1/subjects/{ref}/export": {
            "parameters": [_REF],
            "get": _op("Everything readable about the subject as one streamed ZIP",
                       scope="read", errors=(404,)),
        },
        "/v1/subjects/{ref}/restriction": {
            "parameters": [_REF],
            "post": _op("Restrict processing (Art. 18): only compliance reads from now on",
                        scope="erasure", ok_schema=SUBJECT,
                        body={"type": "object", "required": ["reason"],
                              "properties": {"reason": {"type": "string", "maxLength": 1000}}},
                        errors=(404, 422), description="The erasure or compliance scope."),
            "delete": _op("Lift the restriction", scope="erasure", ok_schema=SUBJECT,
                          errors=(404,)),
        },
        "/v1/subjects/{ref}": {
            "parameters": [_REF],
            "get": _op("The subject's status and counts per category", scope="read",
                       ok_schema=SUBJECT, errors=(404,)),
        },
    }  # fmt: skip


HOLD = {
    "type": "object",
    "properties": {
        "id": _UUID,
        "subject_ref": {"type": ["string", "null"]},
        "subject_ref_hash": {"type": ["string", "null"]},
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
        "note": {"type": ["string", "null"]},
        "placed_at": _TIME,
        "placed_by": _UUID,
        "expires_at": {"type": ["string", "null"]},
        "released_at": {"type": ["string", "null"]},
        "released_by": {"type": ["string", "null"]},
        "release_requested_by": {"type": ["string", "null"]},
        "release_requested_at": {"type": ["string", "null"]},
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


def _hold_paths() -> dict[str, dict[str, Any]]:
    hold_id = _path("hold_id")
    return {
        "/v1/holds": {
            "post": _op("Place a legal hold on a subject (or the whole tenant), all or some "
                        "categories", scope="compliance", ok=201, body=HOLD_PLACE,
                        ok_schema=HOLD, errors=(400, 415, 422)),
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
                         body={"type": "object", "properties": {"expires_at": _TIME,
                                                                "note": _STR}}),
        },
        "/v1/holds/{hold_id}/impact": {
            "parameters": [hold_id],
            "get": _op("What releasing this hold would shred now, by category (counts)",
                       scope="compliance", errors=(404,)),
        },
        "/v1/holds/{hold_id}/release": {
            "parameters": [hold_id],
            "post": _op("Release a hold (litigation and law_enforcement: the first call "
                        "answers 202, a second compliance key releases)", scope="compliance",
                        ok_schema=HOLD, errors=(404, 409, 422),
                        body={"type": "object", "required": ["reason"],
                              "properties": {"reason": _STR}}),
        },
    }  # fmt: skip


ERASURE = {
    "type": "object",
    "properties": {
        "id": _UUID,
        "subject_ref_hash": _STR,
        "status": {
            "type": "string",
            "enum": ["scheduled", "in_progress", "completed", "held", "cancelled"],
        },
        "requested_at": _TIME,
        "not_before": _TIME,
        "due_at": _TIME,
        "completed_at": {"type": ["string", "null"]},
        "shredded": {"type": "array", "items": {"type": "object"}},
        "held": {"type": "array", "items": {"type": "object"}},
        "retained": {"type": "array", "items": {"type": "object"}},
    },
}


def _erasure_paths() -> dict[str, dict[str, Any]]:
    erasure_id = _path("erasure_id")
    return {
        "/v1/subjects/{ref}/erasure": {
            "parameters": [_REF],
            "post": _op("Erase a subject: 202 scheduled; 200 with the open erasure if one exists",
                        scope="erasure", ok=202, ok_schema=ERASURE, errors=(400, 415, 422),
                        body={"type": "object", "properties": {"reason": _STR, "reference": _STR}}),
        },
        "/v1/erasures": {
            "get": _op("List erasures, newest first", scope="erasure",
                       ok_schema=_list_page(ERASURE),
                       params=[_query("status", _STR, "Only this status"),
                               _query("subject_ref", _STR, "Only this subject's erasures "
                                      "(by reference; the vault matches its keyed hash)"),
                               *_PAGING],
                       errors=(422,)),
        },
        "/v1/erasures/{erasure_id}": {
            "parameters": [erasure_id],
            "get": _op("What was shredded, what is held and by which hold", scope="erasure",
                       ok_schema=ERASURE, errors=(404,)),
        },
        "/v1/erasures/{erasure_id}/receipt": {
            "parameters": [erasure_id],
            "get": _op("The signed receipt: final once completed, interim while held; 409 before",
                       scope="erasure", errors=(404, 409)),
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
