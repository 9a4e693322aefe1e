"""Erasure instructions: /v1/subjects/{ref}/erasure and /v1/erasures (erasure scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef, normalize_ref
from vault.http.models.erasures import (
    Erasure,
    ErasureListQuery,
    ErasurePage,
    ErasureRequestBody,
    ErasureRequested,
    SignedReceipt,
)
from vault.http.operation import Answer, Tag, created, ok, operation, render, render_stored
from vault.http.pages import page_after_time
from vault.http.params import decode_cursor_parts, encode_cursor_parts, path_uuid
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.services.api_keys import Principal
from vault.services.erasure_receipts import read_receipt_document
from vault.services.erasures import ErasureRequest

_READERS = (Scope.ERASURE, Scope.COMPLIANCE)


@operation(
    "requestErasure", tag=Tag.ERASURES,
    summary="Erase a subject: 202 scheduled; 200 with the open erasure if one exists",
    scope=Scope.ERASURE,
    answers={
        202: created(ErasureRequested, "/v1/erasures/{erasure_id}", "Scheduled"),
        200: Answer("The subject already has an open erasure: that one", ErasureRequested),
    },
    description="The body is optional; when sent, it is application/json. due_at: 30 days or "
    "one calendar month, whichever is sooner; not_before: after the tenant's grace period "
    "(24 h under the erasure rate brake). Data written after the request is not covered.",
)  # fmt: skip
async def request_erasure(
    request: Request, caller: Principal, ref: SubjectRef, body: ErasureRequestBody | None
) -> Response:
    asked = body or ErasureRequestBody()
    erasure, created_now = await vault_state(request).erasures.request(
        caller.tenant_id, ref, ErasureRequest(asked.reason, asked.reference), caller.key_id
    )
    if not created_now:
        return render(ErasureRequested.of(erasure))
    return render(
        ErasureRequested.of(erasure),
        status=202,
        headers={"Location": f"/v1/erasures/{erasure['id']}"},
    )


@operation(
    "getErasure", tag=Tag.ERASURES, summary="What was shredded, what is held and by which hold",
    scope=_READERS, answers={200: ok(Erasure)}, errors=(404,),
)  # fmt: skip
async def show_erasure(request: Request, caller: Principal) -> Response:
    erasure = await vault_state(request).erasures.get(
        caller.tenant_id, path_uuid(request.path_params["erasure_id"])
    )
    return render(Erasure.of(erasure))


@operation(
    "listErasures", tag=Tag.ERASURES, summary="List erasures, newest first",
    scope=_READERS, answers={200: ok(ErasurePage)},
)  # fmt: skip
async def list_erasures(request: Request, caller: Principal, query: ErasureListQuery) -> Response:
    state = vault_state(request)
    ref_hash = None
    if query.subject_ref is not None:
        ref_hash = await state.subject_refs.hash(caller.tenant_id, normalize_ref(query.subject_ref))
    erasures = await state.erasures.list(
        caller.tenant_id, query.status, page_after_time(decode_cursor_parts(query.cursor, 2)),
        query.limit, subject_ref_hash=ref_hash,
    )  # fmt: skip
    last = erasures[-1] if len(erasures) == query.limit else None
    cursor = encode_cursor_parts(rfc3339(last["requested_at"]), str(last["id"])) if last else None
    return render(ErasurePage([Erasure.of(e) for e in erasures], cursor))


@operation(
    "cancelErasure", tag=Tag.ERASURES, summary="Cancel during the grace period (409 after "
    "not_before)", scope=Scope.ERASURE, answers={200: ok(Erasure)}, errors=(404, 409),
)  # fmt: skip
async def cancel_erasure(request: Request, caller: Principal) -> Response:
    erasure = await vault_state(request).erasures.cancel(
        caller.tenant_id, path_uuid(request.path_params["erasure_id"]), caller.key_id
    )
    return render(Erasure.of(erasure))


@operation(
    "releaseErasureBrake", tag=Tag.ERASURES,
    summary="Let an erasure held back by the rate brake run after the tenant's grace period "
    "instead of 24 h (409 when it is not braked)",
    scope=Scope.ADMIN, answers={200: ok(Erasure)}, errors=(404, 409),
)  # fmt: skip
async def release_erasure_brake(request: Request, caller: Principal) -> Response:
    erasure = await vault_state(request).erasures.release_brake(
        caller.tenant_id, path_uuid(request.path_params["erasure_id"]), caller.key_id
    )
    return render(Erasure.of(erasure))


@operation(
    "getErasureReceipt", tag=Tag.ERASURES,
    summary="The signed receipt: final once completed, interim while held; 409 before",
    scope=_READERS, answers={200: ok(SignedReceipt)}, errors=(404, 409),
    description="Verify it offline with the key set at /v1/receipt-keys (or `datavault "
    "receipt verify FILE`).",
)  # fmt: skip
async def erasure_receipt(request: Request, caller: Principal) -> Response:
    document = await read_receipt_document(
        vault_state(request).db, caller.tenant_id, path_uuid(request.path_params["erasure_id"])
    )
    return render_stored(document, SignedReceipt)
