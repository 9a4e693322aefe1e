"""Hold pages: list, place (with field errors beside the fields), a hold with its journal
and impact, extend or annotate, release (two keys for litigation and law enforcement),
and the disclosures made under it, with the form that records one."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from vault.console import disclosures
from vault.console.auth import session_csrf, signed_in
from vault.console.dates import parse_field
from vault.console.sections import DISCLOSURES, HOLDS
from vault.console.state import console_state
from vault.console.views import hold_view, key_prefixes
from vault.console.web import (
    clear_cookie,
    console_page,
    field_message,
    form_ref,
    language,
    page,
    read_form,
    redirect,
    set_cookie,
)
from vault.domain.holds import MAX_NOTE_LENGTH, HoldReason
from vault.domain.subject_refs import SubjectRef, normalize_ref
from vault.errors import Conflict, InvalidInput
from vault.http.models.holds import HoldPlacement
from vault.http.operation import convert
from vault.http.pages import page_after_time, page_params
from vault.http.params import encode_cursor_parts, path_uuid
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.services.api_keys import Principal
from vault.services.disclosures import Recorder
from vault.services.holds import Actor, HoldRequest, check_expiry

PAGE_SIZE = 50


def _actor(request: Request, principal: Principal) -> Actor:
    ip = request.state.client_ip
    return Actor(principal.key_id, str(ip) if ip is not None else None)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _hex_hash(value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidInput("subject_ref_hash must be hex", field="subject_ref_hash") from None


@console_page
async def list_holds(request: Request) -> Response:
    session = await signed_in(request, *HOLDS)
    limit, after = page_params(request, {"active", "subject_ref_hash", "reason"})
    active = request.query_params.get("active", "true") != "false"
    reason = request.query_params.get("reason") or None
    ref_hash = _hex_hash(request.query_params.get("subject_ref_hash"))
    now = console_state(request).sessions.clock()
    rows = await vault_state(request).holds.list(
        session.principal.tenant_id, active=active, subject_ref_hash=ref_hash,
        after=page_after_time(after), limit=limit, reason=reason,
    )  # fmt: skip
    last = rows[-1] if len(rows) == limit else None
    cursor = encode_cursor_parts(rfc3339(last["placed_at"]), str(last["id"])) if last else None
    return page(
        request, "holds.html",
        {"holds": [hold_view(h, now) for h in rows], "active": active, "cursor": cursor,
         "ref_hash": ref_hash.hex() if ref_hash else "", "reason": reason or "",
         "reasons": [r.value for r in HoldReason]},
    )  # fmt: skip


async def _hold_form(
    request: Request, tenant_id: uuid.UUID, values: dict[str, Any], errors: dict[str, str],
    status: int = 200,
) -> Response:  # fmt: skip
    known = await vault_state(request).holds.known_categories(tenant_id)
    return page(
        request, "hold_new.html",
        {"values": values, "errors": errors, "categories": known,
         "reasons": [r.value for r in HoldReason], "max_note": MAX_NOTE_LENGTH},
        status=status,
    )  # fmt: skip


@console_page
async def new_hold_form(request: Request) -> Response:
    session = await signed_in(request, *HOLDS)
    return await _hold_form(request, session.principal.tenant_id, {"categories": []}, {})


@console_page
async def place_hold(request: Request) -> Response:
    session = await signed_in(request, *HOLDS)
    form = await read_form(request, session_csrf(request))
    tenant_id = session.principal.tenant_id
    state = vault_state(request)
    values: dict[str, Any] = {
        name: _text(form, name) for name in ("reason", "reference", "note", "expires_at")
    }
    raw_ref = form.get("subject_ref")
    values["subject_ref"] = raw_ref if isinstance(raw_ref, str) else ""
    values["categories"] = [c for c in form.getlist("categories") if isinstance(c, str)]
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "reason": values["reason"], "reference": values["reference"],
        "note": values["note"] or None, "categories": values["categories"] or None,
    }  # fmt: skip
    # The API's model checks each field; one at a time (the others set to values it
    # accepts), so the page shows every error at once.
    for field in ("reason", "reference", "note", "categories"):
        trial = {**{f: _valid_sample(f) for f in body if f != field}, field: body[field]}
        try:
            convert({k: v for k, v in trial.items() if v is not None}, HoldPlacement)
        except InvalidInput as exc:
            errors[field] = field_message(field, exc)
    ref = None
    try:
        ref = form_ref(form)
    except InvalidInput as exc:
        errors["subject_ref"] = field_message("subject_ref", exc)
    expires_at = None
    try:
        expires_at = check_expiry(
            parse_field("expires_at", values["expires_at"], language(request))
        )
    except InvalidInput as exc:
        errors["expires_at"] = field_message("expires_at", exc)
    if errors:
        return await _hold_form(request, tenant_id, values, errors, status=422)
    placement = convert({k: v for k, v in body.items() if v is not None}, HoldPlacement)
    ref_hash = await state.subject_refs.hash(tenant_id, ref) if ref else None
    request.state.subject_ref_hash = ref_hash
    try:
        hold = await state.holds.place(
            tenant_id,
            HoldRequest(
                ref_hash, tuple(placement.categories) if placement.categories else None,
                placement.reason.value, placement.reference, placement.note, expires_at,
            ),
            _actor(request, session.principal),
        )  # fmt: skip
    except InvalidInput as exc:  # categories the tenant does not know
        errors[exc.field] = field_message(exc.field, exc)
        return await _hold_form(request, tenant_id, values, errors, status=422)
    response = redirect(f"{_hold_path(hold['id'])}?placed=1")
    if ref is not None:
        _remember_typed_ref(response, request, hold["id"], ref)
    return response


# The vault keeps only the keyed hash of a held subject's reference, so the hold's page
# cannot show the reference the officer typed, and the reference never goes into a URL.
# The page right after placing shows it once from this cookie: only on that hold's path,
# for the browser session (not written to disk as a persistent cookie would be),
# HttpOnly, and cleared by that page, which shows it only if its keyed hash is the hold's.
TYPED_REF_COOKIE = "dv_console_typed_ref"


def _hold_path(hold_id: uuid.UUID) -> str:
    return f"/console/holds/{hold_id}"


def _remember_typed_ref(
    response: Response, request: Request, hold_id: uuid.UUID, ref: SubjectRef
) -> None:
    value = base64.urlsafe_b64encode(ref.reveal().encode()).decode()
    set_cookie(response, request, TYPED_REF_COOKIE, value, path=_hold_path(hold_id))


async def _typed_ref(
    request: Request, tenant_id: uuid.UUID, hold: dict[str, Any]
) -> SubjectRef | None:
    """The reference typed when this hold was placed, if this browser just placed it."""
    value = request.cookies.get(TYPED_REF_COOKIE)
    if not value or not hold["subject_ref_hash"] or not request.query_params.get("placed"):
        return None
    try:
        ref = normalize_ref(base64.urlsafe_b64decode(value.encode()).decode())
    except (ValueError, InvalidInput):  # not base64 or UTF-8; not a reference
        return None
    same = await vault_state(request).subject_refs.hash(tenant_id, ref)
    return ref if same == bytes(hold["subject_ref_hash"]) else None


def _valid_sample(field: str) -> Any:
    """A value the service accepts for `field`, to check another field on its own."""
    return {"reason": HoldReason.REGULATORY.value, "reference": "x"}.get(field)


async def _hold_page(
    request: Request, hold_id: uuid.UUID, *, message: str = "",
    errors: dict[str, str] | None = None, status: int = 200,
    disclosure_typed: dict[str, Any] | None = None,
) -> Response:  # fmt: skip
    session = await signed_in(request, *HOLDS)
    tenant_id = session.principal.tenant_id
    state = vault_state(request)
    hold = await state.holds.get(tenant_id, hold_id)
    impact = await state.holds.impact(tenant_id, hold_id)
    now = console_state(request).sessions.clock()
    keys = await key_prefixes(state, tenant_id)
    known = await state.holds.known_categories(tenant_id)
    typed_ref = await _typed_ref(request, tenant_id, hold)
    flash = {"placed": "hold.placed", "disclosed": "disclosures.recorded"}
    shown = next((key for name, key in flash.items() if request.query_params.get(name)), "")
    response = page(
        request, "hold.html",
        {"hold": hold_view(hold, now), "impact": impact, "keys": keys,
         "message": message or shown, "errors": errors or {},
         "me": session.principal.key_id, "typed_ref": typed_ref.reveal() if typed_ref else None,
         "disclosures": await disclosures.under_hold(request, session.principal, hold_id),
         "disclosure": disclosure_typed or disclosures.form_defaults(hold, language(request)),
         "categories": known},
        status=status,
    )  # fmt: skip
    if request.cookies.get(TYPED_REF_COOKIE):
        clear_cookie(response, request, TYPED_REF_COOKIE, path=_hold_path(hold_id))
    return response


@console_page
async def show_hold(request: Request) -> Response:
    return await _hold_page(request, path_uuid(request.path_params["hold_id"]))


@console_page
async def amend_hold(request: Request) -> Response:
    session = await signed_in(request, *HOLDS)
    hold_id = path_uuid(request.path_params["hold_id"])
    form = await read_form(request, session_csrf(request))
    changes: dict[str, Any] = {}
    try:
        if _text(form, "expires_at"):
            changes["expires_at"] = parse_field(
                "expires_at", _text(form, "expires_at"), language(request)
            )
        if "note" in form:
            note = _text(form, "note")
            if len(note) > MAX_NOTE_LENGTH:
                raise InvalidInput(
                    f"note must be at most {MAX_NOTE_LENGTH} characters", field="note"
                )
            changes["note"] = note or None
        if not changes:
            raise InvalidInput("give a new expiry or a note", field="expires_at")
        await vault_state(request).holds.amend(
            session.principal.tenant_id, hold_id, changes, _actor(request, session.principal)
        )
    except InvalidInput as exc:
        errors = {exc.field: field_message(exc.field, exc)}
        return await _hold_page(request, hold_id, errors=errors, status=422)
    return redirect(f"/console/holds/{hold_id}")


@console_page
async def release_hold(request: Request) -> Response:
    session = await signed_in(request, *HOLDS)
    hold_id = path_uuid(request.path_params["hold_id"])
    form = await read_form(request, session_csrf(request))
    try:
        await vault_state(request).holds.release(
            session.principal.tenant_id, hold_id, _text(form, "reason"),
            _actor(request, session.principal),
        )  # fmt: skip
    except (InvalidInput, Conflict) as exc:
        # A second click by the same officer, or a hold released meanwhile: said on the page.
        conflict = isinstance(exc, Conflict)
        message = exc.detail if conflict else field_message("release_reason", exc)
        return await _hold_page(
            request, hold_id, errors={"release_reason": message}, status=409 if conflict else 422
        )
    return redirect(f"/console/holds/{hold_id}")


@console_page
async def record_disclosure(request: Request) -> Response:
    """The form beside the hold: a disclosure made under this hold (for a subject hold,
    of that subject; for a tenant-wide one, of the subject the form names, if any)."""
    session = await signed_in(request, *DISCLOSURES)
    hold_id = path_uuid(request.path_params["hold_id"])
    form = await read_form(request, session_csrf(request))
    tenant_id = session.principal.tenant_id
    state = vault_state(request)
    await state.holds.get(tenant_id, hold_id)  # another tenant's hold: the 404 page
    read = await disclosures.read_disclosure_form(form, state, tenant_id, language(request))
    request.state.subject_ref_hash = read.subject_ref_hash
    try:
        recorded = await state.disclosures.record(
            tenant_id, read.subject_ref_hash, hold_id, read.values,
            Recorder(session.principal.key_id, request.state.request_id), read.parse_errors,
        )  # fmt: skip
    except InvalidInput as exc:
        return await _hold_page(
            request, hold_id, errors=disclosures.form_errors(exc), status=422,
            disclosure_typed=read.typed,
        )  # fmt: skip
    request.state.subject_ref_hash = recorded.subject_ref_hash
    return redirect(f"/console/holds/{hold_id}?disclosed=1#disclosures")
