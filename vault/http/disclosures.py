"""/v1/disclosures (compliance scope): record that data was handed to a third party, list
and read the records."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.errors import InvalidInput
from vault.http.auth import require
from vault.http.body import optional_str, read_json_object
from vault.http.pages import page_after_time, page_params
from vault.http.params import encode_cursor_parts, parse_time, path_uuid, query_uuid
from vault.http.render import json_response, rfc3339
from vault.http.state import vault_state
from vault.services.disclosures import Disclosure, Recorder

_FIELDS = {
    "subject_ref", "hold_id", "recipient", "legal_basis", "reference", "categories",
    "description", "disclosed_at", "withhold_from_subject_until",
}  # fmt: skip
_TIMES = ("disclosed_at", "withhold_from_subject_until")


def render_disclosure(disclosure: Disclosure) -> dict[str, Any]:
    ref = disclosure.subject_ref
    return {
        "id": disclosure.id,
        "subject_ref": ref.reveal() if ref is not None else None,
        "subject_ref_hash": disclosure.subject_ref_hash,
        "hold_id": disclosure.hold_id,
        "recipient": disclosure.recipient,
        "legal_basis": disclosure.legal_basis,
        "reference": disclosure.reference,
        "categories": list(disclosure.categories),
        "description": disclosure.description,
        "description_erased": disclosure.description_erased,
        "disclosed_at": disclosure.disclosed_at,
        "withhold_from_subject_until": disclosure.withhold_from_subject_until,
        "recorded_at": disclosure.recorded_at,
        "recorded_by": disclosure.recorded_by,
        "seq": disclosure.seq,
    }


async def record_disclosure(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    state = vault_state(request)
    body = await read_json_object(request)
    unknown = set(body) - _FIELDS
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", field=first, also=rest)
    errors: dict[str, str] = {}
    values: dict[str, object] = dict(body)
    for name in _TIMES:
        try:
            values[name] = parse_time(name, body.get(name))
        except InvalidInput as exc:
            values[name], errors[name] = None, exc.detail
    hold_id = None
    try:
        hold_id = query_uuid("hold_id", optional_str(body, "hold_id"))
    except InvalidInput as exc:
        errors["hold_id"] = exc.detail
    ref_hash = None
    try:
        raw_ref = optional_str(body, "subject_ref")
        if raw_ref is not None:
            ref_hash = await state.subject_refs.hash(principal.tenant_id, normalize_ref(raw_ref))
    except InvalidInput as exc:
        errors["subject_ref"] = exc.detail
    request.state.subject_ref_hash = ref_hash
    disclosure = await state.disclosures.record(
        principal.tenant_id, ref_hash, hold_id, values,
        Recorder(principal.key_id, request.state.request_id), errors,
    )  # fmt: skip
    # The hold's subject, when the disclosure named only the hold.
    request.state.subject_ref_hash = disclosure.subject_ref_hash
    return json_response(
        render_disclosure(disclosure),
        status=201,
        headers={"Location": f"/v1/disclosures/{disclosure.id}"},
    )


async def list_disclosures(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    state = vault_state(request)
    limit, after = page_params(request, {"subject_ref", "hold_id", "since", "until"})
    params = request.query_params
    ref_hash = None
    if params.get("subject_ref") is not None:
        ref = normalize_ref(params["subject_ref"])
        ref_hash = await state.subject_refs.hash(principal.tenant_id, ref)
        request.state.subject_ref_hash = ref_hash
    items = await state.disclosures.search(
        principal.tenant_id,
        subject_ref_hash=ref_hash,
        hold_id=query_uuid("hold_id", params.get("hold_id")),
        since=parse_time("since", params.get("since")),
        until=parse_time("until", params.get("until")),
        after=page_after_time(after),
        limit=limit,
    )
    last = items[-1] if len(items) == limit else None
    cursor = encode_cursor_parts(rfc3339(last.disclosed_at), str(last.id)) if last else None
    return json_response({"items": [render_disclosure(d) for d in items], "next_cursor": cursor})


async def show_disclosure(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    disclosure = await vault_state(request).disclosures.get(
        principal.tenant_id, path_uuid(request.path_params["disclosure_id"])
    )
    request.state.subject_ref_hash = disclosure.subject_ref_hash
    return json_response(render_disclosure(disclosure))
