"""Subject pages: look up by reference (posted, so the reference never sits in a URL or
the browser history), status, categories, holds, erasures, disclosures, restriction
on/off, export."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vault.console import disclosures
from vault.console.auth import may, session_csrf, signed_in
from vault.console.sections import DISCLOSURES, SUBJECTS, may_open
from vault.console.state import console_state
from vault.console.views import erasure_view, hold_view
from vault.console.web import (
    console_page,
    field_message,
    page,
    read_form,
    with_security_headers,
)
from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef, normalize_ref
from vault.errors import InvalidInput, NotFound
from vault.http.state import vault_state
from vault.http.subject_request import access_for, note_subject
from vault.http.transfers import watch_transfer
from vault.services.console_sessions import ConsoleSession
from vault.services.subject_status import MAX_RESTRICTION_REASON_LENGTH

# A subject's most recent erasures (one per instruction; a subject rarely has more).
SUBJECT_ERASURES_SHOWN = 50


def _ref(form: FormData) -> SubjectRef:
    value = form.get("ref")
    return normalize_ref(value if isinstance(value, str) else "", field="ref")


@console_page
async def lookup_form(request: Request) -> Response:
    await signed_in(request, *SUBJECTS)
    return page(request, "subject_lookup.html", {"errors": {}})


async def _subject_page(
    request: Request, session: ConsoleSession, ref: SubjectRef, *, message: str = "",
    errors: dict[str, str] | None = None, status: int = 200,
) -> Response:  # fmt: skip
    state = vault_state(request)
    tenant_id = session.principal.tenant_id
    ref_hash = await note_subject(request, tenant_id, ref)
    now = console_state(request).sessions.clock()
    subject = None
    subject_status = None
    categories: dict[str, dict[str, int]] = {}
    try:
        summary = await state.subject_status.summary(tenant_id, ref)
    except NotFound:
        pass
    else:
        subject, subject_status, categories = summary.subject, summary.status, summary.categories
    holds = None
    if may(session, Scope.COMPLIANCE):
        holds = [
            hold_view(h, now)
            for h in await state.holds.list(
                tenant_id, active=True, subject_ref_hash=ref_hash, after=None, limit=500
            )
        ]
    shown = None
    if may_open(session.principal.scopes, DISCLOSURES):
        shown = await disclosures.about_subject(request, session.principal, ref_hash)
    erasures = [
        erasure_view(e, now)
        for e in await state.erasures.list(
            tenant_id, None, None, SUBJECT_ERASURES_SHOWN, subject_ref_hash=ref_hash
        )
    ]
    context: dict[str, Any] = {
        "ref": ref.reveal(), "ref_hash": ref_hash.hex(), "subject": subject,
        "subject_status": subject_status,
        "categories": categories, "holds": holds, "erasures": erasures, "message": message,
        "disclosures": shown,
        "errors": errors or {}, "may_restrict": may(session, Scope.ERASURE)
        or may(session, Scope.COMPLIANCE), "may_export": may(session, Scope.READ),
    }  # fmt: skip
    return page(request, "subject.html", context, status=status)


@console_page
async def lookup(request: Request) -> Response:
    session = await signed_in(request, *SUBJECTS)
    form = await read_form(request, session_csrf(request))
    try:
        ref = _ref(form)
    except InvalidInput as exc:
        errors = {"ref": field_message("ref", exc)}
        return page(request, "subject_lookup.html", {"errors": errors}, status=422)
    return await _subject_page(request, session, ref)


@console_page
async def set_restriction(request: Request) -> Response:
    session = await signed_in(request, Scope.ERASURE, Scope.COMPLIANCE)
    form = await read_form(request, session_csrf(request))
    ref = _ref(form)
    tenant_id = session.principal.tenant_id
    await note_subject(request, tenant_id, ref)
    state = vault_state(request)
    action = form.get("action")
    reason = form.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    if action == "restrict" and not 1 <= len(reason) <= MAX_RESTRICTION_REASON_LENGTH:
        errors = {"reason": "invalid.restriction_reason"}
        return await _subject_page(request, session, ref, errors=errors, status=422)
    if action == "restrict":
        await state.subject_status.restrict(tenant_id, ref, reason)
    elif action == "lift":
        await state.subject_status.lift_restriction(tenant_id, ref)
    else:
        raise InvalidInput("action must be restrict or lift", field="action")
    message = "subject.restricted_now" if action == "restrict" else "subject.lifted_now"
    return await _subject_page(request, session, ref, message=message)


@console_page
async def export(request: Request) -> Response:
    session = await signed_in(request, *SUBJECTS)
    form = await read_form(request, session_csrf(request))
    ref = _ref(form)
    tenant_id = session.principal.tenant_id
    await note_subject(request, tenant_id, ref)
    body = await vault_state(request).export.export(
        tenant_id, ref, access_for(session.principal), watch_transfer(request, session.principal)
    )
    response = StreamingResponse(
        body,
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="subject-export.zip"'},
    )
    with_security_headers(response)
    return response
