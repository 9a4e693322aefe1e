"""/v1/access-log (compliance scope)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.errors import InvalidInput
from vault.http.auth import require
from vault.http.params import decode_cursor, encode_cursor, parse_time, query_int, query_uuid
from vault.http.render import json_response
from vault.http.state import vault_state
from vault.services.access_audit import (
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_LIMIT,
    AccessQuery,
    parse_ip_filter,
    search,
)

_FILTERS = {"api_key_id", "ip", "subject_ref", "status", "since", "until", "limit", "cursor"}


async def search_access_log(request: Request) -> Response:
    principal = await require(request, Scope.COMPLIANCE)
    params = request.query_params
    unknown = set(params) - _FILTERS
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(
            f"unknown query parameters: {', '.join(sorted(unknown))}", field=first, also=rest
        )
    query = access_filters(
        params,
        limit=query_int("limit", params.get("limit"), minimum=1, maximum=SEARCH_MAX_LIMIT)
        or SEARCH_DEFAULT_LIMIT,
    )
    state = vault_state(request)
    subject_ref = params.get("subject_ref")
    if subject_ref is not None:
        ref = normalize_ref(subject_ref)
        query = replace(
            query, subject_ref_hash=await state.subject_refs.hash(principal.tenant_id, ref)
        )
    rows = await search(state.db, principal.tenant_id, query)
    items = [_render_row(row) for row in rows]
    next_cursor = encode_cursor(rows[-1]["seq"]) if len(rows) == query.limit else None
    return json_response({"items": items, "next_cursor": next_cursor})


def access_filters(
    params: Mapping[str, str], *, limit: int, subject_ref_hash: bytes | None = None
) -> AccessQuery:
    """The filters the API and the console share: key, IP or CIDR, status, time, cursor."""
    ip_text = params.get("ip")
    try:
        ip = parse_ip_filter(ip_text) if ip_text else None
    except ValueError:
        raise InvalidInput("ip must be an IP address or a CIDR", field="ip") from None
    return AccessQuery(
        api_key_id=query_uuid("api_key_id", params.get("api_key_id")),
        ip=ip,
        status=query_int("status", params.get("status"), minimum=100, maximum=599),
        since=parse_time("since", params.get("since")),
        until=parse_time("until", params.get("until")),
        before_seq=decode_cursor(params.get("cursor")),
        subject_ref_hash=subject_ref_hash,
        limit=limit,
    )


def _render_row(row: dict[str, Any]) -> dict[str, Any]:
    ip = row["ip"]
    if ip is not None and row["ip_masklen"] not in (32, 128):
        ip = f"{ip}/{row['ip_masklen']}"  # truncated by retention
    return {
        "at": row["at"],
        "api_key_id": row["api_key_id"],
        "key_prefix": row["key_prefix"],
        "ip": ip,
        "method": row["method"],
        "route": row["route"],
        "status": row["status"],
        "subject_ref_hash": row["subject_ref_hash"],
        "artefact_id": row["artefact_id"],
        "bytes": row["bytes_in"] + row["bytes_out"],
        "bytes_in": row["bytes_in"],
        "bytes_out": row["bytes_out"],
        "request_id": row["request_id"],
    }
