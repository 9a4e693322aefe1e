"""/v1/subjects/{ref}/records: small JSON values, replaced as a whole."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.http.auth import require
from vault.http.body import read_json_body
from vault.http.pages import page_after_name, page_params
from vault.http.params import encode_cursor_parts, query_int
from vault.http.render import json_response, rfc3339
from vault.http.state import vault_state
from vault.http.subject_path import subject_location, subject_ref
from vault.http.subject_request import access_for, note_subject
from vault.services.records import MAX_RECORD_BYTES, RecordVersion, check_json


def _render(record: RecordVersion) -> dict[str, object]:
    return {
        "name": record.name,
        "category": record.category,
        "version": record.version,
        "updated_at": record.updated_at,
    }


async def put_record(request: Request) -> Response:
    principal = await require(request, Scope.INGEST, liveness_in_statement=True)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    value = check_json(await read_json_body(request, MAX_RECORD_BYTES))
    record = await vault_state(request).records.put(
        principal.tenant_id,
        principal.key_to_check,
        ref,
        request.path_params["name"],
        request.query_params.get("category") or None,
        value,
    )
    if not record.created:
        return json_response(_render(record))
    location = subject_location(ref, "records", record.name)
    return json_response(_render(record), status=201, headers={"Location": location})


async def get_record(request: Request) -> Response:
    principal = await require(request, Scope.READ, liveness_in_statement=True)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    value = await vault_state(request).records.get(
        principal.tenant_id,
        principal.key_to_check,
        ref,
        request.path_params["name"],
        access_for(principal),
    )
    return Response(
        value, media_type="application/json", headers={"Cache-Control": "private, no-store"}
    )


async def list_records(request: Request) -> Response:
    principal = await require(request, Scope.READ, liveness_in_statement=True)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    limit, after = page_params(request, set())
    records = await vault_state(request).records.list(
        principal.tenant_id,
        principal.key_to_check,
        ref,
        access_for(principal),
        after=page_after_name(after),
        limit=limit,
    )
    last = records[-1] if len(records) == limit else None
    cursor = encode_cursor_parts(rfc3339(last.updated_at), last.name) if last else None
    return json_response({"items": [_render(r) for r in records], "next_cursor": cursor})


async def delete_record(request: Request) -> Response:
    principal = await require(request, Scope.INGEST)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    await vault_state(request).records.delete(principal.tenant_id, ref, request.path_params["name"])
    return Response(status_code=204)


async def list_record_versions(request: Request) -> Response:
    """Versions a hold kept when the record was replaced: compliance only."""
    principal = await require(request, Scope.COMPLIANCE)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    versions = await vault_state(request).records.kept_versions(
        principal.tenant_id, ref, request.path_params["name"]
    )
    items = [
        {
            "version": v["version"],
            "updated_at": v["created_at"],
            "superseded_at": v["superseded_at"],
            "hold_ids": v["hold_ids"],
        }
        for v in versions
    ]
    return json_response({"items": items, "next_cursor": None})


async def get_record_version(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    version = query_int("version", request.path_params["version"], minimum=1, maximum=2**31 - 1)
    assert version is not None
    value = await vault_state(request).records.version_value(
        principal.tenant_id, ref, request.path_params["name"], version
    )
    return Response(
        value, media_type="application/json", headers={"Cache-Control": "private, no-store"}
    )
