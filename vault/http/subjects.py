"""/v1/subjects/{ref}: summary, export, restriction of processing."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef
from vault.http.models.subjects import RestrictionRequest, Subject
from vault.http.operation import BINARY, Answer, Header, Tag, ok, operation, render
from vault.http.state import vault_state
from vault.http.subject_request import access_for
from vault.http.transfers import watch_transfer
from vault.services.api_keys import Principal


@operation(
    "getSubject", tag=Tag.SUBJECTS, summary="The subject's status and counts per category",
    scope=Scope.READ, answers={200: ok(Subject)}, errors=(404,),
)  # fmt: skip
async def show_subject(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    summary = await vault_state(request).subject_status.summary(caller.tenant_id, ref)
    return render(Subject.of(summary, ref.reveal()))


_ZIP = Answer(
    "manifest.json (records, artefact metadata, holds, erasures) and every artefact's plaintext",
    media="application/zip",
    schema=BINARY,
    headers=(Header("Content-Disposition", 'attachment; filename="subject-export.zip"'),),
)


@operation(
    "exportSubject", tag=Tag.SUBJECTS,
    summary="Everything readable about the subject as one streamed ZIP",
    scope=Scope.READ, answers={200: _ZIP}, errors=(404,),
)  # fmt: skip
async def export_subject(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    body = await vault_state(request).export.export(
        caller.tenant_id, ref, access_for(caller), watch_transfer(request, caller)
    )
    return StreamingResponse(
        body,
        media_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="subject-export.zip"',
            "Cache-Control": "private, no-store",
        },
    )


@operation(
    "restrictSubject", tag=Tag.SUBJECTS,
    summary="Restrict processing (Art. 18): only compliance reads from now on",
    scope=(Scope.ERASURE, Scope.COMPLIANCE), answers={200: ok(Subject)}, errors=(404,),
    description="Nothing new is written for the subject, the application's deletes answer "
    "409 (problem type restricted) and retention leaves its data alone; an erasure "
    "instruction still proceeds.",
)  # fmt: skip
async def restrict_subject(
    request: Request, caller: Principal, ref: SubjectRef, body: RestrictionRequest
) -> Response:
    summary = await vault_state(request).subject_status.restrict(caller.tenant_id, ref, body.reason)
    return render(Subject.of(summary, ref.reveal()))


@operation(
    "liftRestriction", tag=Tag.SUBJECTS, summary="Lift the restriction",
    scope=(Scope.ERASURE, Scope.COMPLIANCE), answers={200: ok(Subject)}, errors=(404,),
)  # fmt: skip
async def lift_restriction(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    summary = await vault_state(request).subject_status.lift_restriction(caller.tenant_id, ref)
    return render(Subject.of(summary, ref.reveal()))
