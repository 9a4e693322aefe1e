"""Erasure instructions: /v1/subjects/{ref}/erasure and /v1/erasures (erasure scope)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.http.auth import require
from vault.http.body import has_body, read_json_object
from vault.http.pages import page_after_time, page_params
from vault.http.params import encode_cursor_parts, path_uuid
from vault.http.render import json_response, rfc3339
from vault.http.state import vault_state
from vault.http.subject_path import subject_ref
from vault.http.subject_request import note_subject
from vault.services.erasure_receipts import read_receipt
from vault.services.erasures import check_erasure_request


def render_erasure(erasure: dict[str, Any], full: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": erasure["id"],
        "subject_ref_hash": erasure["subject_ref_hash"].hex(),
        "status": erasure["status"],
        "requested_at": erasure["requested_at"],
        "not_before": erasure["not_before"],
        "due_at": erasure["due_at"],
    }
    if not full:
        return body
    items = erasure.get("items", [])
    held: dict[str, set[str]] = {}
    for item in items:
        if item["outcome"] == "held":
            held.setdefault(item["category"], set()).update(str(h) for h in item["hold_ids"] or [])
    body.update(
        {
            # Null until the status is completed; shredded_at: when the (latest) shred
            # itself committed.
            "completed_at": erasure["completed_at"],
            "shredded_at": erasure["shredded_at"],
            "cancelled_at": erasure["cancelled_at"],
            "updated_at": erasure["updated_at"],
            "reason": erasure["reason"],
            "reference": erasure["reference"],
            "rate_braked": erasure["braked"],
            "shredded": [
                {
                    "category": i["category"],
                    "key_id": i["key_id"],
                    "destroyed_at": i["destroyed_at"],
                }
                for i in items
                if i["outcome"] == "shredded"
            ],
            "held": [{"category": c, "hold_ids": sorted(ids)} for c, ids in sorted(held.items())],
            "retained": [
                {"category": i["category"], "until": i["kept_until"]}
                for i in items
                if i["outcome"] == "retained"
            ],
        }
    )
    return body


async def request_erasure(request: Request) -> Response:
    principal = await require(request, Scope.ERASURE)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    body = await read_json_object(request) if has_body(request) else {}
    erasure, created = await vault_state(request).erasures.request(
        principal.tenant_id, ref, check_erasure_request(body), principal.key_id
    )
    if not created:
        return json_response(render_erasure(erasure, full=False))
    return json_response(
        render_erasure(erasure, full=False),
        status=202,
        headers={"Location": f"/v1/erasures/{erasure['id']}"},
    )


async def show_erasure(request: Request) -> Response:
    principal = await require(request, Scope.ERASURE, Scope.COMPLIANCE)
    erasure = await vault_state(request).erasures.get(
        principal.tenant_id, path_uuid(request.path_params["erasure_id"])
    )
    return json_response(render_erasure(erasure))


async def list_erasures(request: Request) -> Response:
    principal = await require(request, Scope.ERASURE, Scope.COMPLIANCE)
    limit, after = page_params(request, {"status", "subject_ref"})
    state = vault_state(request)
    subject_ref = request.query_params.get("subject_ref")
    ref_hash = (
        await state.subject_refs.hash(principal.tenant_id, normalize_ref(subject_ref))
        if subject_ref is not None
        else None
    )
    erasures = await state.erasures.list(
        principal.tenant_id,
        request.query_params.get("status"),
        page_after_time(after),
        limit,
        subject_ref_hash=ref_hash,
    )
    last = erasures[-1] if len(erasures) == limit else None
    cursor = encode_cursor_parts(rfc3339(last["requested_at"]), str(last["id"])) if last else None
    return json_response({"items": [render_erasure(e) for e in erasures], "next_cursor": cursor})


async def cancel_erasure(request: Request) -> Response:
    principal = await require(request, Scope.ERASURE)
    erasure = await vault_state(request).erasures.cancel(
        principal.tenant_id, path_uuid(request.path_params["erasure_id"]), principal.key_id
    )
    return json_response(render_erasure(erasure))


async def release_erasure_brake(request: Request) -> Response:
    principal = await require(request, Scope.ADMIN)
    erasure = await vault_state(request).erasures.release_brake(
        principal.tenant_id, path_uuid(request.path_params["erasure_id"]), principal.key_id
    )
    return json_response(render_erasure(erasure))


async def erasure_receipt(request: Request) -> Response:
    principal = await require(request, Scope.ERASURE, Scope.COMPLIANCE)
    document = await read_receipt(
        vault_state(request).db, principal.tenant_id, path_uuid(request.path_params["erasure_id"])
    )
    return json_response(document)
