"""/v1/holds (compliance scope): place, list, read, amend and release legal holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.holds import RELEASE_REQUEST_LAPSES_AFTER, release_request_pending
from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.errors import InvalidInput
from vault.http.auth import require
from vault.http.body import optional_str, read_json_object
from vault.http.pages import page_after_time, page_params
from vault.http.params import encode_cursor_parts, parse_time, path_uuid
from vault.http.render import json_response, rfc3339
from vault.http.state import vault_state
from vault.services.api_keys import Principal
from vault.services.holds import Actor, check_expiry, check_hold_request

_PLACE_FIELDS = {"subject_ref", "categories", "reason", "reference", "note", "expires_at"}


def _actor(request: Request, principal: Principal) -> Actor:
    ip = request.state.client_ip
    return Actor(principal.key_id, str(ip) if ip is not None else None)


def render_hold(hold: dict[str, Any], subject_ref: str | None = None) -> dict[str, Any]:
    requested_at = hold["release_requested_at"]
    pending = release_request_pending(requested_at, datetime.now(UTC))
    body: dict[str, Any] = {
        "id": hold["id"],
        # The vault keeps only the keyed hash of a held subject's reference.
        "subject_ref": subject_ref,
        "subject_ref_hash": hold["subject_ref_hash"].hex() if hold["subject_ref_hash"] else None,
        "scope": "subject" if hold["subject_ref_hash"] else "tenant",
        "categories": hold["categories"],
        "reason": hold["reason"],
        "reference": hold["reference"],
        "note": hold["note"],
        "placed_at": hold["placed_at"],
        "placed_by": hold["placed_by"],
        "expires_at": hold["expires_at"],
        "released_at": hold["released_at"],
        "released_by": hold["released_by"],
        # A release request waiting for its second person (none once it lapsed).
        "release_requested_by": hold["release_requested_by"] if pending else None,
        "release_requested_at": requested_at if pending else None,
        "release_request_expires_at": (
            requested_at + RELEASE_REQUEST_LAPSES_AFTER if pending else None
        ),
        # dv_hold_in_force (migration 0016), read with the hold.
        "active": bool(hold["in_force"]),
    }
    if "events" in hold:
        body["events"] = hold["events"]
    return body


async def place_hold(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    state = vault_state(request)
    body = await read_json_object(request)
    unknown = set(body) - _PLACE_FIELDS
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", field=first, also=rest)
    async with state.db.tenant_tx(principal.tenant_id) as conn:
        known = await state.holds.known_categories(conn, principal.tenant_id)
    hold_request = check_hold_request(body, known)
    raw_ref = optional_str(body, "subject_ref")
    ref = normalize_ref(raw_ref) if raw_ref is not None else None
    ref_hash = await state.subject_refs.hash(principal.tenant_id, ref) if ref else None
    request.state.subject_ref_hash = ref_hash
    hold_request = hold_request.__class__(
        ref_hash, hold_request.categories, hold_request.reason, hold_request.reference,
        hold_request.note, check_expiry(parse_time("expires_at", body.get("expires_at"))),
    )  # fmt: skip
    hold = await state.holds.place(principal.tenant_id, hold_request, _actor(request, principal))
    return json_response(
        render_hold(hold, ref.reveal() if ref else None),
        status=201,
        headers={"Location": f"/v1/holds/{hold['id']}"},
    )


async def list_holds(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    state = vault_state(request)
    limit, after = page_params(request, {"active", "subject_ref", "reason"})
    active = request.query_params.get("active", "false").lower()
    if active not in ("true", "false"):
        raise InvalidInput("active must be true or false", field="active")
    raw_ref = request.query_params.get("subject_ref")
    ref_hash = None
    if raw_ref is not None:
        ref_hash = await state.subject_refs.hash(principal.tenant_id, normalize_ref(raw_ref))
    holds = await state.holds.list(
        principal.tenant_id, active=active == "true", subject_ref_hash=ref_hash,
        after=page_after_time(after), limit=limit, reason=request.query_params.get("reason"),
    )  # fmt: skip
    last = holds[-1] if len(holds) == limit else None
    cursor = encode_cursor_parts(rfc3339(last["placed_at"]), str(last["id"])) if last else None
    return json_response({"items": [render_hold(h) for h in holds], "next_cursor": cursor})


async def show_hold(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    hold = await vault_state(request).holds.get(
        principal.tenant_id, path_uuid(request.path_params["hold_id"])
    )
    return json_response(render_hold(hold))


async def hold_impact(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    rows = await vault_state(request).holds.impact(
        principal.tenant_id, path_uuid(request.path_params["hold_id"])
    )
    return json_response(
        {
            "categories": {
                r["category"]: {"keys": r["keys"], "erasures": r["erasures"]} for r in rows
            }
        }
    )


async def amend_hold(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    body = await read_json_object(request)
    unknown = set(body) - {"expires_at", "note"}
    if unknown or not body:
        field = sorted(unknown)[0] if unknown else "(body)"
        raise InvalidInput("send expires_at and/or note", field=field)
    changes: dict[str, Any] = {}
    if "expires_at" in body:
        changes["expires_at"] = parse_time("expires_at", body["expires_at"])
    if "note" in body:
        note = optional_str(body, "note")
        if note is not None and len(note) > 2000:
            raise InvalidInput("note must be at most 2000 characters", field="note")
        changes["note"] = note
    hold = await vault_state(request).holds.amend(
        principal.tenant_id,
        path_uuid(request.path_params["hold_id"]),
        changes,
        _actor(request, principal),
    )
    return json_response(render_hold(hold))


async def release_hold(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    body = await read_json_object(request)
    reason = optional_str(body, "reason") or ""
    released, hold = await vault_state(request).holds.release(
        principal.tenant_id,
        path_uuid(request.path_params["hold_id"]),
        reason,
        _actor(request, principal),
    )
    rendered = render_hold(hold)
    return json_response(rendered, status=200 if released else 202)


async def withdraw_hold_release(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    hold = await vault_state(request).holds.withdraw_release(
        principal.tenant_id, path_uuid(request.path_params["hold_id"]), _actor(request, principal)
    )
    return json_response(render_hold(hold))
