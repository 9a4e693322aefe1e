"""Erasure pages: list and filter, and one erasure with what was shredded, what is kept
(by which hold, until when) and its receipt, checked against the published keys."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from vault.console.auth import signed_in
from vault.console.sections import ERASURES
from vault.console.state import console_state
from vault.console.views import erasure_view
from vault.console.web import console_page, page, with_security_headers
from vault.domain.erasures import ErasureStatus
from vault.errors import Conflict, InvalidInput
from vault.http.pages import page_after_time, page_params
from vault.http.params import encode_cursor_parts, path_uuid
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.services.erasure_receipts import read_receipt
from vault.services.receipt_verify import ReceiptInvalid, verify_signed_receipt
from vault.services.receipts import published_keys


@console_page
async def list_erasures(request: Request) -> Response:
    session = await signed_in(request, *ERASURES)
    limit, after = page_params(request, {"status"})
    status = request.query_params.get("status") or None
    if status is not None and status not in set(ErasureStatus):
        raise InvalidInput(f"status must be one of {', '.join(ErasureStatus)}", field="status")
    rows = await vault_state(request).erasures.list(
        session.principal.tenant_id, status, page_after_time(after), limit
    )
    now = console_state(request).sessions.clock()
    last = rows[-1] if len(rows) == limit else None
    cursor = encode_cursor_parts(rfc3339(last["requested_at"]), str(last["id"])) if last else None
    return page(
        request, "erasures.html",
        {"erasures": [erasure_view(e, now) for e in rows], "status": status or "",
         "statuses": list(ErasureStatus), "cursor": cursor},
    )  # fmt: skip


@console_page
async def show_erasure(request: Request) -> Response:
    session = await signed_in(request, *ERASURES)
    state = vault_state(request)
    erasure_id = path_uuid(request.path_params["erasure_id"])
    erasure = await state.erasures.get(session.principal.tenant_id, erasure_id)
    now = console_state(request).sessions.clock()
    receipt: dict[str, object] | None = None
    verified: bool | None = None
    problem = ""
    try:
        document = await read_receipt(state.db, session.principal.tenant_id, erasure_id)
    except Conflict:
        document = None
    if document is not None:
        try:
            receipt = verify_signed_receipt(document, await published_keys(state.db))
            verified = True
        except ReceiptInvalid as exc:
            verified, problem = False, str(exc)
            receipt = document.get("receipt") if isinstance(document.get("receipt"), dict) else {}
    return page(
        request, "erasure.html",
        {"erasure": erasure_view(erasure, now), "receipt": receipt, "verified": verified,
         "problem": problem, "key_id": document.get("key_id") if document else None},
    )  # fmt: skip


@console_page
async def download_receipt(request: Request) -> Response:
    session = await signed_in(request, *ERASURES)
    erasure_id = path_uuid(request.path_params["erasure_id"])
    document = await read_receipt(vault_state(request).db, session.principal.tenant_id, erasure_id)
    response = Response(
        json.dumps(document, ensure_ascii=False, indent=2).encode(),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="erasure-receipt-{erasure_id}.json"'
        },
    )
    return with_security_headers(response)
