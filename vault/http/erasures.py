"""Erasure instructions: /v1/subjects/{ref}/erasure and /v1/erasures (erasure scope)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef, normalize_ref
from vault.errors import InvalidInput
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
    # The key's liveness is checked in the statement that requests the erasure.
    key_checked_in_statement=True,
)  # fmt: skip
async def request_erasure(
    request: Request, caller: Principal, ref: SubjectRef, body: ErasureRequestBody | None
) -> Response:
    asked = body or ErasureRequestBody()
    erasure, created_now = await vault_state(request).erasures.request(
        caller.tenant_id, ref, ErasureRequest(asked.reason, asked.reference), caller.key_id,
        key_to_check=caller.key_to_check,
    )  # fmt: skip
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
    "listErasures", tag=Tag.ERASURES,
    summary="List erasures, newest first (with updated_since: changed since, oldest change "
    "first)",
    scope=_READERS, answers={200: ok(ErasurePage)},
)  # fmt: skip
async def list_erasures(request: Request, caller: Principal, query: ErasureListQuery) -> Response:
    """Newest first; with `updated_since`, the erasures changed at or after that time,
    oldest change first, for a client that follows them."""
    state = vault_state(request)
    ref_hash = None
    if query.subject_ref is not None:
        ref_hash = await state.subject_refs.hash(caller.tenant_id, normalize_ref(query.subject_ref))
    status = query.status.value if query.status is not None else None
    if query.updated_since is not None:
        erasures = await state.erasures.list_changed(
            caller.tenant_id, query.updated_since, status, _changes_after(query.cursor),
            query.limit, subject_ref_hash=ref_hash,
        )  # fmt: skip
        last = erasures[-1] if len(erasures) == query.limit else None
        cursor = _changes_cursor(last) if last else None
    else:
        erasures = await state.erasures.list(
            caller.tenant_id, status, page_after_time(decode_cursor_parts(query.cursor, 2)),
            query.limit, subject_ref_hash=ref_hash,
        )  # fmt: skip
        last = erasures[-1] if len(erasures) == query.limit else None
        cursor = (
            encode_cursor_parts(rfc3339(last["requested_at"]), str(last["id"])) if last else None
        )
    return render(ErasurePage([Erasure.of(e) for e in erasures], cursor))


# The first part of a cursor into changes (updated_since): a newest-first cursor has two
# parts, so one cannot be handed to the other listing by mistake.
_CHANGES = "changes"


def _changes_after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    parts = decode_cursor_parts(cursor, 3)
    if parts is None:
        return None
    if parts[0] != _CHANGES:
        raise InvalidInput("cursor is not one this vault issued", field="cursor")
    return page_after_time(parts[1:])


def _changes_cursor(last: dict[str, Any]) -> str:
    return encode_cursor_parts(_CHANGES, rfc3339(last["updated_at"]), str(last["id"]))


@operation(
    "cancelErasure", tag=Tag.ERASURES, summary="Cancel during the grace period (409 after "
    "not_before)", scope=Scope.ERASURE, answers={200: ok(Erasure)}, errors=(404, 409),
)  # fmt: skip
async def cancel_erasure(request: Request, caller: Principal) -> Response:
    vault = vault_state(request)
    erasure_id = path_uuid(request.path_params["erasure_id"])
    erasure = await vault.erasures.cancel(caller.tenant_id, erasure_id, caller.key_id)
    # In the shred ledger before the answer: a restored backup does not run it after all.
    await vault.ledger.make_durable(
        "erasure_ledger_entry_deferred", tenant_id=str(caller.tenant_id),
        erasure_id=str(erasure_id),
    )  # fmt: skip
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
