"""/v1/subjects/{ref}: summary, export, restriction of processing."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vault.domain.scopes import Scope
from vault.errors import InvalidInput
from vault.http.auth import require
from vault.http.body import optional_str, read_json_object
from vault.http.render import json_response
from vault.http.state import vault_state
from vault.http.subject_path import subject_ref
from vault.http.subject_request import access_for, note_subject
from vault.http.transfers import watch_transfer
from vault.services.subjects import Subject

MAX_REASON_LENGTH = 1000


def _render(
    subject: Subject, ref: str, status: str, categories: dict[str, dict[str, int]] | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "ref": ref,
        "subject_ref": ref,
        "subject_ref_hash": subject.ref_hash.hex(),
        "status": status,
        "created_at": subject.created_at,
        "restricted_at": subject.restricted_at,
    }
    if categories is not None:
        body["categories"] = categories
    return body


async def show_subject(request: Request) -> Response:
    principal = await require(request, Scope.READ)
    ref = subject_ref(request)
    ref_hash = await note_subject(request, principal.tenant_id, ref)
    state = vault_state(request)
    async with state.db.tenant_tx(principal.tenant_id) as conn:
        subject = await state.subjects.find(conn, principal.tenant_id, ref_hash)
        status = await state.subjects.status(conn, subject)
        categories = await state.subjects.summary(conn, subject)
    return json_response(_render(subject, ref.reveal(), status, categories))


async def export_subject(request: Request) -> Response:
    principal = await require(request, Scope.READ)
    ref = subject_ref(request)
    await note_subject(request, principal.tenant_id, ref)
    body = await vault_state(request).export.export(
        principal.tenant_id, ref, access_for(principal), watch_transfer(request, principal)
    )
    return StreamingResponse(
        body,
        media_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="subject-export.zip"',
            "Cache-Control": "private, no-store",
        },
    )


async def restrict_subject(request: Request) -> Response:
    principal = await require(request, Scope.ERASURE, Scope.COMPLIANCE)
    ref = subject_ref(request)
    ref_hash = await note_subject(request, principal.tenant_id, ref)
    body = await read_json_object(request)
    reason = optional_str(body, "reason")
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"reason must be 1-{MAX_REASON_LENGTH} characters", field="reason")
    state = vault_state(request)
    async with state.db.tenant_tx(principal.tenant_id) as conn:
        subject = await state.subjects.find(conn, principal.tenant_id, ref_hash)
        await state.subjects.restrict(conn, subject, reason)
        subject = await state.subjects.find(conn, principal.tenant_id, ref_hash)
        status = await state.subjects.status(conn, subject)
    return json_response(_render(subject, ref.reveal(), status))


async def lift_restriction(request: Request) -> Response:
    principal = await require(request, Scope.ERASURE, Scope.COMPLIANCE)
    ref = subject_ref(request)
    ref_hash = await note_subject(request, principal.tenant_id, ref)
    state = vault_state(request)
    async with state.db.tenant_tx(principal.tenant_id) as conn:
        subject = await state.subjects.find(conn, principal.tenant_id, ref_hash)
        await state.subjects.lift_restriction(conn, subject)
        subject = await state.subjects.find(conn, principal.tenant_id, ref_hash)
        status = await state.subjects.status(conn, subject)
    return json_response(_render(subject, ref.reveal(), status))
