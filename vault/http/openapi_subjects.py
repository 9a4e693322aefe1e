"""OpenAPI paths of the subject data API: artefacts, records, subjects, export, restriction."""

from __future__ import annotations

from typing import Any

from vault.http.openapi_parts import (
    _NULLABLE_TIME,
    _PAGING,
    _REF,
    _STR,
    _TIME,
    _UUID,
    BINARY,
    PROBLEM_SCHEMA,
    _header_param,
    _list_page,
    _op,
    _path,
    _query,
    answer,
    header,
    location,
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
        "expires_at": _NULLABLE_TIME,
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
        "restricted_at": _NULLABLE_TIME,
        "categories": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "artefacts": {"type": "integer"},
                    "records": {"type": "integer"},
                    "bytes": {"type": "integer"},
                },
            },
        },
    },
}

# The headers of an artefact's content, whole (200) or ranged (206), GET or HEAD
# (vault/http/artefacts.py `_content_headers`).
_CONTENT_HEADERS = {
    "Content-Length": header({"type": "integer"}, "Bytes of the body (GET sends them)"),
    "ETag": header(_STR, "The artefact id in quotes (artefacts never change)"),
    "Accept-Ranges": header({"type": "string", "const": "bytes"}, "Ranges are in bytes"),
    "Cache-Control": header(_STR, "private, no-store"),
    "Content-Disposition": header(
        _STR,
        "attachment, with filename (ASCII) and filename* (RFC 8187, UTF-8) when the "
        "artefact has a filename",
    ),
    "X-Content-Type-Options": header({"type": "string", "const": "nosniff"}, "nosniff"),
}
_RANGED_HEADERS = {
    **_CONTENT_HEADERS,
    "Content-Range": header(_STR, "bytes FIRST-LAST/SIZE"),
}
_UNSATISFIABLE_HEADERS = {"Content-Range": header(_STR, "bytes */SIZE")}
_RANGE = _header_param(
    "Range",
    _STR,
    "One byte range: bytes=a-b, bytes=a- or bytes=-n (the last n bytes). Several "
    "ranges are not served as multipart.",
)


def _content_answers(with_body: bool) -> dict[int, dict[str, Any]]:
    # The plaintext goes out under the artefact's own Content-Type, so any media type.
    # HEAD answers with the same headers and no body.
    body, problem = (BINARY, PROBLEM_SCHEMA) if with_body else (None, None)
    whole, part = ("The whole plaintext", "The requested range")
    if not with_body:
        whole, part = (f"Headers of {whole.lower()}", f"Headers of {part.lower()}")
    return {
        200: answer(whole, body, media="*/*", headers=_CONTENT_HEADERS),
        206: answer(part, body, media="*/*", headers=_RANGED_HEADERS),
        416: answer(
            "The range lies outside the artefact",
            problem,
            media="application/problem+json",
            headers=_UNSATISFIABLE_HEADERS,
        ),
    }


def _content_operation(summary: str, with_body: bool) -> dict[str, Any]:
    return _op(
        summary, scope="read", answers=_content_answers(with_body), params=[_RANGE],
        errors=(404, 410),
    )  # fmt: skip


LINK_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "expires_in": {
            "type": "integer", "minimum": 1, "maximum": 3600, "default": 900,
            "description": "Seconds the link lives",
        },
    },
}  # fmt: skip
LINK = {
    "type": "object",
    "required": ["url", "expires_at"],
    "properties": {
        "url": {
            **_STR,
            "format": "uri",
            "description": "DATAVAULT_PUBLIC_URL/playback/<token>: the token is the "
            "credential; the URL names neither the subject nor the artefact",
        },
        "expires_at": _TIME,
    },
}


def _link_operation(summary: str, with_body: bool) -> dict[str, Any]:
    return _op(
        summary, scope=None, answers=_content_answers(with_body), params=[_RANGE],
        errors=(404, 429, 503),
        description="No Authorization header: the token in the path is the credential. "
        "The artefact's content as GET …/content serves it (Range, HEAD, the same "
        "headers). 404 for a token that names no link and for a dead one alike: expired, "
        "its minting key revoked or expired, its artefact deleted, its subject erased or "
        "restricted. Every use is in the access log under the minting key.",
    )  # fmt: skip


def _link_paths() -> dict[str, dict[str, Any]]:
    return {
        "/v1/subjects/{ref}/artefacts/{artefact_id}/links": {
            "parameters": [_REF, _path("artefact_id")],
            "post": _op(
                "Mint a playback link: a URL that serves the artefact's content without an "
                "Authorization header, for a browser's <video> or a download link",
                scope="read", ok=201, answers={201: answer("Created", LINK)},
                body=LINK_REQUEST, body_required=False,
                errors=(400, 403, 404, 410, 413, 415, 422),
                description="expires_in: seconds, default 900, at most 3600. The link "
                "reads as the read scope does, whatever scope minted it: 403 (restricted) "
                "for a restricted subject or data kept after an erasure. The token is "
                "stored only as a hash: this answer is the one place it is shown.",
            ),
        },
        "/playback/{token}": {
            "parameters": [_path("token")],
            "get": _link_operation(
                "A playback link: the artefact's plaintext, streamed; one byte range gives "
                "206", with_body=True,
            ),
            "head": _link_operation(
                "The headers GET would send through the link, without the body",
                with_body=False,
            ),
        },
    }  # fmt: skip


def _artefact_paths(category: dict[str, Any]) -> dict[str, dict[str, Any]]:
    upload_category = {**category, "required": True}
    filename = _header_param(
        "X-Filename",
        _STR,
        "The file's name, at most 255 characters, no control characters, directional "
        "overrides or slashes: raw UTF-8, or RFC 8187 (UTF-8''percent-encoded). Bytes "
        "that are not UTF-8: 422.",
    )
    return {
        "/v1/subjects/{ref}/artefacts": {
            "parameters": [_REF],
            "post": _op(
                "Upload an artefact (raw body, streamed; Content-Length or chunked)",
                scope="ingest", ok=201, params=[upload_category, filename],
                answers={201: answer("Created", ARTEFACT, headers=location(
                    "/v1/subjects/{ref}/artefacts/{artefact_id}"))},
                body={"required": True, "content": {"*/*": {"schema": BINARY}},
                      "description": "The artefact's bytes, of any media type. Its "
                      "Content-Type (application/octet-stream when absent) is kept as "
                      "content_type."},
                errors=(400, 403, 408, 413, 422),
                description="Creates the subject if it is new. 413 above the deployment's "
                "maximum or the tenant's max_artefact_bytes for the category; 408 when the "
                "body stops arriving.",
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
            "get": _content_operation(
                "The plaintext, streamed; one byte range gives 206", with_body=True
            ),
            "head": _content_operation(
                "The headers GET would send, without the body", with_body=False
            ),
        },
    }  # fmt: skip


def _subject_paths() -> dict[str, dict[str, Any]]:
    category = _query(
        "category", _STR, "recording, transcript, account, billing, support, or the tenant's own"
    )
    return {
        **_artefact_paths(category),
        **_link_paths(),
        "/v1/subjects/{ref}/records": {
            "parameters": [_REF],
            "get": _op("List the subject's records", scope="read", params=_PAGING,
                       ok_schema=_list_page(RECORD), errors=(404, 422)),
        },
        "/v1/subjects/{ref}/records/{name}": {
            "parameters": [_REF, _path("name")],
            "put": _op(
                "Create (201) or replace (200) a record: any JSON value, at most 1 MiB",
                scope="ingest", ok=201,
                answers={201: answer("Created", RECORD, headers=location(
                             "/v1/subjects/{ref}/records/{name}")),
                         200: answer("Replaced (version + 1)", RECORD)},
                params=[{**category, "description": "Required on create; a record keeps "
                         "its category (another one: 409)"}],
                body={"description": "any JSON value"}, errors=(400, 409, 413, 415, 422),
                description="Replacing shreds the previous version unless a hold covers it.",
            ),
            "get": _op("The record's JSON value as stored", scope="read",
                       ok_schema={"description": "any JSON value"}, errors=(404, 410)),
            "delete": _op("Crypto-shred the record", scope="ingest", ok=204,
                          errors=(404, 409, 410),
                          description="409 under a legal hold (with `holds`), or while the "
                          "subject's processing is restricted (problem type restricted)."),
        },
        "/v1/subjects/{ref}/records/{name}/versions": {
            "parameters": [_REF, _path("name")],
            "get": _op(
                "Versions a legal hold kept when the record was replaced, newest first",
                scope="compliance", errors=(404,),
                ok_schema={"type": "object", "required": ["items"], "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "version": {"type": "integer"}, "updated_at": _TIME,
                        "superseded_at": _TIME,
                        "hold_ids": {"type": "array", "items": _STR}}}},
                    "next_cursor": {"type": ["string", "null"]}}},
            ),
        },
        "/v1/subjects/{ref}/records/{name}/versions/{version}": {
            "parameters": [_REF, _path("name"), _path("version")],
            "get": _op("One version's JSON value, while its key lives", scope="compliance",
                       ok_schema={"description": "any JSON value"}, errors=(404, 410, 422)),
        },
        "/v1/subjects/{ref}/export": {
            "parameters": [_REF],
            "get": _op(
                "Everything readable about the subject as one streamed ZIP", scope="read",
                answers={200: answer(
                    "manifest.json (records, artefact metadata, holds, erasures) and every "
                    "artefact's plaintext", BINARY, media="application/zip",
                    headers={"Content-Disposition": header(
                        _STR, 'attachment; filename="subject-export.zip"')},
                )},
                errors=(404,),
            ),
        },
        "/v1/subjects/{ref}/restriction": {
            "parameters": [_REF],
            "post": _op("Restrict processing (Art. 18): only compliance reads from now on",
                        scope=("erasure", "compliance"), ok_schema=SUBJECT,
                        body={"type": "object", "required": ["reason"],
                              "properties": {"reason": {"type": "string", "minLength": 1,
                                                        "maxLength": 1000}}},
                        errors=(400, 404, 413, 415, 422)),
            "delete": _op("Lift the restriction", scope=("erasure", "compliance"),
                          ok_schema=SUBJECT, errors=(404,)),
        },
        "/v1/subjects/{ref}": {
            "parameters": [_REF],
            "get": _op("The subject's status and counts per category", scope="read",
                       ok_schema=SUBJECT, errors=(404,)),
        },
    }  # fmt: skip
