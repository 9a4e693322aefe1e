"""The OpenAPI 3.1 description of the JSON API and the /docs page rendered from it.

Each operation is written here beside its route; a test checks that every route of the
app is described, so the document grows with every route.
"""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

from vault.http.openapi_compliance import _erasure_paths, _hold_paths
from vault.http.openapi_disclosures import _disclosure_paths
from vault.http.openapi_parts import (
    _JSON,
    _NULLABLE_TIME,
    _STR,
    _TIME,
    _UUID,
    PROBLEM,
    PROBLEM_SCHEMA,
    _op,
    _path,
    _query,
    answer,
    location,
)
from vault.http.openapi_subjects import _subject_paths
from vault.http.openapi_webhooks import _webhook_paths

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
        "owner": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "The person who holds the key (e.g. an e-mail or staff id); "
            "required for compliance and admin keys. Two-person hold releases need keys of "
            "two owners.",
        },
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
        "id": _UUID, "prefix": _STR, "name": _STR, "owner": {"type": ["string", "null"]},
        "scopes": _SCOPES,
        "allowed_cidrs": {"type": "array", "items": _STR}, "expires_at": _TIME,
        "created_at": _TIME, "revoked_at": _TIME, "last_used_at": _TIME, "last_used_ip": _STR,
        "bring_your_own": {"type": "boolean"},
    },
}  # fmt: skip
_RETENTION_RULE = {
    "type": "object",
    "properties": {
        "delete_after_days": {"type": ["integer", "null"]},
        "keep_at_least_days": {"type": ["integer", "null"]},
    },
}
SETTINGS_PATCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "categories": {"type": "array", "items": _STR, "maxItems": 50},
        "max_artefact_bytes": {
            "type": "object",
            "additionalProperties": {"type": ["integer", "null"], "minimum": 1},
            "description": "category -> largest artefact in bytes (at most the deployment's "
            "DATAVAULT_MAX_ARTEFACT_BYTES); null removes the category's limit",
        },
        "retention": {"type": "object", "additionalProperties": _RETENTION_RULE},
        "erasure_grace_hours": {"type": "integer", "minimum": 0, "maximum": 696},
        "erasure_rate_limit_per_hour": {"type": ["integer", "null"], "minimum": 1},
    },
}
SETTINGS = {
    "type": "object",
    "properties": {
        "categories": {"type": "array", "items": _STR},
        "max_artefact_bytes": {"type": "object", "additionalProperties": {"type": "integer"}},
        "erasure_grace_hours": {"type": "integer"},
        "erasure_rate_limit_per_hour": {"type": ["integer", "null"]},
        "retention": {"type": "object", "additionalProperties": _RETENTION_RULE},
        "pending": {
            "type": "array",
            "description": "Shortened or removed keep_at_least_days that bind data written "
            "before the change only from effective_at (the deployment's closure delay)",
            "items": {
                "type": "object",
                "properties": {
                    "category": _STR,
                    "keep_at_least_days": {"type": ["integer", "null"]},
                    "previous_keep_at_least_days": {"type": "integer"},
                    "changed_at": _TIME,
                    "effective_at": _TIME,
                },
            },
        },
    },
}
_TENANT_STATUS = {"type": "string", "enum": ["active", "closing", "closed"]}
TENANT = {
    "type": "object",
    "properties": {
        "id": _UUID, "slug": _STR, "status": _TENANT_STATUS, "created_at": _TIME,
        "closure_due_at": _NULLABLE_TIME, "settings": SETTINGS,
    },
}  # fmt: skip
# What POST and DELETE /v1/tenant/closure answer (vault/http/tenant.py `_closure`).
CLOSURE = {
    "type": "object",
    "required": ["status", "closure_requested_at", "closure_due_at", "closed_at"],
    "properties": {
        "status": _TENANT_STATUS,
        "closure_requested_at": _NULLABLE_TIME,
        "closure_due_at": _NULLABLE_TIME,
        "closed_at": _NULLABLE_TIME,
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
                       "use": {"const": "sig"}, "alg": {"const": "Ed25519"}},
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
        "/.well-known/jwks.json": {
            "get": _op("The same JWK set as /v1/receipt-keys, where JOSE libraries look for "
                       "it: under the receipts' issuer (DATAVAULT_PUBLIC_URL)", scope=None,
                       ok_schema=RECEIPT_KEYS),
        },
        "/v1/tenant": {
            "get": _op("The calling key's tenant and its settings", scope="admin",
                       ok_schema=TENANT),
        },
        "/v1/tenant/closure": {
            "post": _op(
                "Schedule destruction of all the tenant's keys after 60 days (holds keep what "
                "they cover)", scope="admin", ok=202, ok_schema=CLOSURE,
                errors=(400, 409, 413, 415, 422),
                body={"type": "object", "required": ["reason"],
                      "properties": {"reason": {"type": "string", "minLength": 1,
                                                "maxLength": 1000}}},
                description="202 with status closing and closure_due_at. 409 when the "
                "tenant is already closing or closed.",
            ),
            "delete": _op("Cancel a scheduled closure before its delay has passed: 200 with "
                          "status active", scope="admin", ok_schema=CLOSURE, errors=(409,)),
        },
        "/v1/tenant/settings": {
            "patch": _op(
                "Change settings; fields left out stay as they were. 200 with all settings",
                scope="admin", body=SETTINGS_PATCH, ok_schema=SETTINGS,
                errors=(400, 413, 415, 422),
                description="retention: {category: {delete_after_days, keep_at_least_days}} "
                "(days or null); erasure_grace_hours 0-696; erasure_rate_limit_per_hour "
                "an integer >= 1 or null; max_artefact_bytes: {category: bytes or null}, "
                "the tenant's own limit per category below the deployment's.",
            ),
        },
        "/v1/api-keys": {
            "post": _op(
                "Create an API key; the secret is shown in this answer only",
                scope="admin", ok=201, body=API_KEY_CREATE,
                answers={201: answer("Created", API_KEY_CREATED,
                                     headers=location("/v1/api-keys/{key_id}"))},
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
        **_disclosure_paths(),
        **_erasure_paths(),
        **_webhook_paths(),
    }  # fmt: skip


# The creating writes that take an Idempotency-Key (vault/http/idempotency.py; a test
# checks this list against the routes wrapped in vault/app.py).
IDEMPOTENT_OPERATIONS = frozenset(
    {
        ("/v1/api-keys", "post"),
        ("/v1/subjects/{ref}/artefacts", "post"),
        ("/v1/subjects/{ref}/records/{name}", "put"),
        ("/v1/subjects/{ref}/erasure", "post"),
        ("/v1/holds", "post"),
        ("/v1/disclosures", "post"),
        ("/v1/tenant/closure", "post"),
        ("/v1/webhooks", "post"),
    }
)
_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": (
        "Kept 24 hours per API key: the same key with the same request returns the first "
        "answer (header Idempotent-Replayed: true) and does nothing again; with another "
        "request, 422; while the first is still running, 409."
    ),
}


def _with_idempotency(paths: dict[str, Any]) -> dict[str, Any]:
    for path, method in IDEMPOTENT_OPERATIONS:
        operation = paths[path][method]
        operation["parameters"] = [*operation.get("parameters", []), _IDEMPOTENCY_HEADER]
        operation["responses"].setdefault("409", PROBLEM)
        operation["responses"].setdefault("422", PROBLEM)
    return paths


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "datavault",
            "version": "1",
            "description": (
                "Multi-tenant vault for end-user data with deletion guarantees. Errors are "
                "RFC 9457 problem+json. Authenticate with 'Authorization: Bearer <api key>'. "
                "x-required-scope names the scope an operation needs ('a or b': either "
                "will do); the compliance scope also reads everything read may."
            ),
        },
        "paths": _with_idempotency(_paths()),
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details",
                    "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": _STR, "title": _STR, "status": {"type": "integer"},
                        "detail": _STR, "request_id": {"type": ["string", "null"]},
                        "errors": {"type": "array", "items": {
                            "type": "object",
                            "properties": {"field": _STR, "message": _STR},
                        }},
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
            if operation.get("description"):
                parts.append(f"<p>{esc(operation['description'])}</p>")
            for param in operation.get("parameters", []):
                where, name = esc(param["in"]), esc(param["name"])
                parts.append(f"<div>{where} <code>{name}</code>: {esc(param['description'])}</div>")
            parts.extend(_body_html(operation.get("requestBody")))
            codes = ", ".join(operation["responses"])
            parts.append(f"<div>Responses: {esc(codes)}</div>")
    parts.append("</body></html>")
    return "".join(parts)


def _body_html(body: dict[str, Any] | None) -> list[str]:
    """A JSON body as its schema; any other as its media types and description."""
    if not body:
        return []
    content = body["content"]
    optional = "" if body.get("required") else " (optional)"
    if _JSON in content:
        schema = json.dumps(content[_JSON]["schema"], indent=2)
        return [f"<div>JSON body{optional}:</div><pre>{html.escape(schema)}</pre>"]
    media = ", ".join(content)
    text = body.get("description", "")
    return [f"<div>Body{optional}: <code>{html.escape(media)}</code> {html.escape(text)}</div>"]
