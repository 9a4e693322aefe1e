"""Access-log pages: search (by key, IP or CIDR, subject, status and time), newest first
with paging, CSV of the current search, and the last chain verification.

The search form is posted and answered with a redirect to a GET whose query holds the
subject's keyed hash instead of its reference, so paging links, the CSV link and the
browser history never carry a reference.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vault.console.auth import session_csrf, signed_in
from vault.console.dates import parse_field
from vault.console.sections import ACCESS_LOG
from vault.console.state import console_state
from vault.console.web import (
    console_page,
    field_message,
    form_ref,
    language,
    page,
    read_form,
    redirect,
    with_security_headers,
)
from vault.errors import InvalidInput
from vault.http.access_log import access_query
from vault.http.models.access_log import AccessLogFilters, AccessRow
from vault.http.operation import parse_query
from vault.http.params import encode_cursor
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.services.access_audit import (
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_LIMIT,
    AccessQuery,
    last_chain_check,
    search,
    verify_and_record_chain,
)

_FILTERS = ("api_key_id", "ip", "subject_ref_hash", "status", "since", "until")
# A CSV download holds at most this many rows (newest first); narrow the search for more.
CSV_MAX_ROWS = 10_000
_CSV_COLUMNS = (
    "at", "api_key_id", "key_prefix", "ip", "method", "route", "status",
    "subject_ref_hash", "artefact_id", "bytes_in", "bytes_out", "request_id",
)  # fmt: skip
# Spreadsheet programs run cells that start with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ConsoleAccessFilters(AccessLogFilters, forbid_unknown_fields=True, kw_only=True):
    """The API's filters, with the subject as its keyed hash (never a reference in a URL)."""

    subject_ref_hash: str | None = None


def _query(request: Request) -> AccessQuery:
    filters = parse_query(request, ConsoleAccessFilters)
    try:
        ref_hash = bytes.fromhex(filters.subject_ref_hash) if filters.subject_ref_hash else None
    except ValueError:
        raise InvalidInput("subject_ref_hash must be hex", field="subject_ref_hash") from None
    return access_query(filters, SEARCH_DEFAULT_LIMIT, subject_ref_hash=ref_hash)


def _current_filters(request: Request) -> dict[str, str]:
    return {k: request.query_params[k] for k in _FILTERS if request.query_params.get(k)}


@console_page
async def search_page(request: Request) -> Response:
    session = await signed_in(request, *ACCESS_LOG)
    tenant_id = session.principal.tenant_id
    state = vault_state(request)
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    cursor = None
    try:
        query = _query(request)
        rows = await search(state.db, tenant_id, query)
        cursor = encode_cursor(rows[-1]["seq"]) if len(rows) == query.limit else None
    except InvalidInput as exc:
        field = str(exc.extra.get("field", "ip"))
        errors[field] = field_message(field, exc)
    check = await last_chain_check(state.db, tenant_id)
    filters = _current_filters(request)
    return page(
        request, "access_log.html",
        {"rows": [AccessRow.of(r) for r in rows], "filters": filters, "cursor": cursor,
         "errors": errors, "check": check,
         "csv_query": urlencode(filters)},
        status=422 if errors else 200,
    )  # fmt: skip


@console_page
async def submit_search(request: Request) -> Response:
    session = await signed_in(request, *ACCESS_LOG)
    form = await read_form(request, session_csrf(request))
    tenant_id = session.principal.tenant_id
    state = vault_state(request)

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    params: dict[str, str] = {}
    key = text("api_key")
    if key:
        # People know keys by their public prefix (as in logs); the id works too.
        prefixes = {row["prefix"]: row["id"] for row in await state.api_keys.list(tenant_id)}
        key_id = prefixes.get(key.removeprefix("dv_").split("_")[0]) or _maybe_uuid(key)
        params["api_key_id"] = str(key_id or uuid.UUID(int=0))
    for name in ("ip", "status"):
        if text(name):
            params[name] = text(name)
    for name in ("since", "until"):
        if text(name):
            try:
                moment = parse_field(name, text(name), language(request))
            except InvalidInput:
                moment = None
            params[name] = moment.isoformat() if moment else text(name)
    ref = form_ref(form)
    if ref is not None:
        params["subject_ref_hash"] = (await state.subject_refs.hash(tenant_id, ref)).hex()
    return redirect(f"/console/access-log?{urlencode(params)}")


def _maybe_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _cell(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return rfc3339(value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@console_page
async def download_csv(request: Request) -> Response:
    session = await signed_in(request, *ACCESS_LOG)
    tenant_id = session.principal.tenant_id
    db = vault_state(request).db
    first = replace(_query(request), limit=SEARCH_MAX_LIMIT)

    async def rows() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_CSV_COLUMNS)
        query, sent = first, 0
        while sent < CSV_MAX_ROWS:
            limit = min(SEARCH_MAX_LIMIT, CSV_MAX_ROWS - sent)
            batch = await search(db, tenant_id, replace(query, limit=limit))
            for row in batch:
                rendered = AccessRow.of(row)
                writer.writerow([_cell(getattr(rendered, c)) for c in _CSV_COLUMNS])
            sent += len(batch)
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(batch) < limit:
                break
            query = replace(query, before_seq=batch[-1]["seq"])

    response = StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="access-log.csv"'},
    )
    with_security_headers(response)
    return response


@console_page
async def verify_chain(request: Request) -> Response:
    session = await signed_in(request, *ACCESS_LOG)
    await read_form(request, session_csrf(request))
    tenant_id = session.principal.tenant_id
    state = vault_state(request)
    console = console_state(request)
    await verify_and_record_chain(
        state.db, state.blobs, console.anchor_keys, tenant_id, console.sessions.clock(),
        session.principal.key_id,
    )  # fmt: skip
    # Back to the search the officer was looking at.
    filters = urlencode(_current_filters(request))
    return redirect(f"/console/access-log?{filters}" if filters else "/console/access-log")
