"""The OpenAPI 3.1 description of the JSON API and the /docs page rendered from it.

Each operation is written here beside its route; a test checks that every route of the
app is described, so the document grows with every route.
"""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}
_JSON = "application/json"


def _op(
    summary: str,
    *,
    scope: str | None,
    ok: int = 200,
    ok_schema: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
    description: str = "",
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(ok): {"description": "Success"}
        if ok_schema is None
        else {"description": "Success", "content": {_JSON: {"schema": ok_schema}}}
    }
    codes = set(errors)
    if scope:
        codes |= {401, 403, 429, 503}
    for code in sorted(codes):
        responses[str(code)] = PROBLEM
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if scope:
        operation["security"] = [{"apiKey": []}]
        operation["x-required-scope"] = scope
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    if params:
        operation["parameters"] = params
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_UUID = {"type": "string", "format": "uuid"}
_SCOPES = {
    "type": "array",
    "items": {"type": "string", "enum": ["ingest", "read", "erasure", "compliance", "admin"]},
}

API_KEY_CREATE = {
    "type": "object",
    "required": ["name", "scopes"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "scopes": _SCOPES,
        "allowed_cidrs": {"type": "array", "items": _STR, "maxItems": 50},
        "expires_at": _TIME,
        "secret": {
            "type": "string",
            "minLength": 32,
            "maxLength": 256,
            "description": "Bring your own key: at least 32 characters, estimated ≥ 128 bits.",
        },
    },
}
API_KEY = {
    "type": "object",
    "properties": {
        "id": _UUID, "prefix": _STR, "name": _STR, "scopes": _SCOPES,
        "allowed_cidrs": {"type": "array", "items": _STR}, "expires_at": _TIME,
        "created_at": _TIME, "revoked_at": _TIME, "last_used_at": _TIME, "last_used_ip": _STR,
        "bring_your_own": {"type": "boolean"},
    },
}  # fmt: skip
SETTINGS_PATCH = {
    "type": "object",
    "properties": {
        "categories": {"type": "array", "items": _STR, "maxItems": 50},
        "max_artefact_bytes": {
            "type": "object",
            "additionalProperties": {"type": ["integer", "null"], "minimum": 1},
        },
        "retention": {"type": "object", "additionalProperties": {"type": "object"}},
        "erasure_grace_hours": {"type": "integer", "minimum": 0, "maximum": 696},
        "erasure_rate_limit_per_hour": {"type": ["integer", "null"], "minimum": 1},
    },
}
API_KEY_CREATED = {
    "type": "object",
    "properties": {**API_KEY["properties"], "secret": _STR},  # type: ignore[dict-item]
}


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"items": {"type": "array", "items": item}}}


ACCESS_ROW = {
    "type": "object",
    "properties": {
        "at": _TIME, "api_key_id": _UUID, "key_prefix": _STR, "ip": _STR, "method": _STR,
        "route": _STR, "status": {"type": "integer"}, "subject_ref_hash": _STR,
        "artefact_id": _UUID, "bytes": {"type": "integer"}, "bytes_in": {"type": "integer"},
        "bytes_out": {"type": "integer"}, "request_id": _STR,
    },
}  # fmt: skip

RECEIPT_KEYS = {
    "type": "object",
    "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {
        "type": "object",
        "required": ["kty", "crv", "kid", "x"],
        "properties": {"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "kid": _STR,
                       "x": {**_STR, "description": "base64url raw public key, no padding"},
                       "use": {"const": "sig"}, "alg": {"const": "EdDSA"}},
    }}},
}  # fmt: skip


def _paths() -> dict[str, dict[str, Any]]:
    return {
        "/healthz": {"get": _op("Process is up", scope=None)},
        "/readyz": {"get": _op("Database and blob store reachable", scope=None, errors=(503,))},
        "/metrics": {"get": _op("Prometheus metrics", scope=None)},
        "/openapi.json": {"get": _op("This document", scope=None)},
        "/docs": {"get": _op("Human-readable API documentation", scope=None)},
        "/v1/receipt-keys": {
            "get": _op("Public keys that verify erasure receipts: a JWK set, retired keys "
                       "included", scope=None, ok_schema=RECEIPT_KEYS),
        },
        "/v1/tenant": {
            "get": _op("The calling key's tenant and its settings", scope="admin"),
        },
        "/v1/tenant/closure": {
            "post": _op(
                "Schedule destruction of all the tenant's keys after 60 days (holds keep what "
                "they cover)", scope="admin", ok=202, errors=(409, 415, 422),
                body={"type": "object", "required": ["reason"], "properties": {"reason": _STR}},
            ),
            "delete": _op("Cancel a scheduled closure before its delay has passed",
                          scope="admin", errors=(409,)),
        },
        "/v1/tenant/settings": {
            "patch": _op(
                "Change settings; fields left out stay as they were. 200 with all settings",
                scope="admin", body=SETTINGS_PATCH, errors=(400, 413, 415, 422),
                description="retention: {category: {delete_after_days, keep_at_least_days}} "
                "(days or null); erasure_grace_hours 0-696; erasure_rate_limit_per_hour "
                "an integer >= 1 or null.",
            ),
        },
        "/v1/api-keys": {
            "post": _op(
                "Create an API key; the secret is shown in this answer only",
                scope="admin", ok=201, body=API_KEY_CREATE,
                ok_schema=API_KEY_CREATED,
                errors=(400, 409, 413, 415, 422),
            ),
            "get": _op(
                "List the tenant's API keys (no secrets)", scope="admin",
                ok_schema=_list_of(API_KEY),
            ),
        },
        "/v1/api-keys/{key_id}": {
            "parameters": [_path("key_id")],
            "delete": _op(
                "Revoke a key; effective on the next request", scope="admin", ok=204,
                errors=(404,),
            ),
        },
        "/v1/access-log": {
            "get": _op(
                "Search the tenant's access log, newest first",
                scope="compliance",
                params=[
                    _query("api_key_id", _UUID, "Only this key's requests"),
                    _query("ip", _STR, "One address or a CIDR"),
                    _query("status", {"type": "integer"}, "HTTP status"),
                    _query("since", _TIME, "At or after"),
                    _query("until", _TIME, "Before"),
                    _query("subject_ref", _STR, "Only requests about this subject"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Rows (50)"),
                    _query("cursor", _STR, "next_cursor of the previous page"),
                ],
                ok_schema={
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": ACCESS_ROW},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                errors=(422,),
            ),
        },
        **_subject_paths(),
        **_hold_paths(),
        **_erasure_paths(),
    }  # fmt: skip


_REF = {
    "name": "ref",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The tenant's id for the data subject, percent-encoded (/ as %2F)",
}
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
_PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Rows (50)"),
    _query("cursor", _STR, "next_cursor of the previous page"),
]


def _list_page(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"]},
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
                       params=[_query("status", _STR, "Only this status"), *_PAGING],
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
    }  # fmt: skip


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "datavault",
            "version": "1",
            "description": (
                "Multi-tenant vault for end-user data with deletion guarantees. Errors are "
                "RFC 9457 problem+json. Authenticate with 'Authorization: Bearer <api key>'."
            ),
        },
        "paths": _paths(),
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details",
                    "content": {
                        "application/problem+json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "type": _STR, "title": _STR, "status": {"type": "integer"},
                                    "detail": _STR,
                                },
                            }
                        }
                    },
                }
            },
        },
    }  # fmt: skip


def render_docs_page(document: dict[str, Any]) -> str:
    """A self-contained page (no scripts, no CDN) listing every operation."""
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>datavault API</title><style>body{font:15px/1.5 system-ui,sans-serif;",
        "max-width:60rem;margin:2rem auto;padding:0 1rem}code,pre{background:#f4f4f4}",
        "h3{margin-bottom:.2rem}.m{font-weight:bold;text-transform:uppercase}</style></head>",
        f"<body><h1>{esc(document['info']['title'])} API v{esc(document['info']['version'])}</h1>",
        f"<p>{esc(document['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            scope = operation.get("x-required-scope")
            parts.append(
                f"<h3><span class='m'>{esc(method)}</span> <code>{esc(path)}</code></h3>"
                f"<p>{esc(operation['summary'])}"
                + (f" — scope <code>{esc(scope)}</code>" if scope else " — no authentication")
                + "</p>"
            )
            for param in operation.get("parameters", []):
                name, text = esc(param["name"]), esc(param["description"])
                parts.append(f"<div>query <code>{name}</code>: {text}</div>")
            body = operation.get("requestBody")
            if body:
                schema = body["content"][_JSON]["schema"]
                parts.append(f"<pre>{esc(json.dumps(schema, indent=2))}</pre>")
            codes = ", ".join(operation["responses"])
            parts.append(f"<div>Responses: {esc(codes)}</div>")
    parts.append("</body></html>")
    return "".join(parts)
