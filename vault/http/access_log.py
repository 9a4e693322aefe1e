"""/v1/access-log (compliance scope)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import normalize_ref
from vault.errors import InvalidInput
from vault.http.models.access_log import AccessLogFilters, AccessLogPage, AccessLogQuery, AccessRow
from vault.http.operation import Tag, ok, operation, render
from vault.http.params import decode_cursor, encode_cursor
from vault.http.state import vault_state
from vault.services.access_audit import AccessQuery, parse_ip_filter, search
from vault.services.api_keys import Principal


@operation(
    "searchAccessLog", tag=Tag.ACCESS_LOG, summary="Search the tenant's access log, newest first",
    scope=Scope.COMPLIANCE, answers={200: ok(AccessLogPage)},
)  # fmt: skip
async def search_access_log(request: Request, caller: Principal, query: AccessLogQuery) -> Response:
    state = vault_state(request)
    ref_hash = None
    if query.subject_ref is not None:
        ref_hash = await state.subject_refs.hash(caller.tenant_id, normalize_ref(query.subject_ref))
    rows = await search(
        state.db, caller.tenant_id, access_query(query, query.limit, subject_ref_hash=ref_hash)
    )
    next_cursor = encode_cursor(rows[-1]["seq"]) if len(rows) == query.limit else None
    return render(AccessLogPage([AccessRow.of(row) for row in rows], next_cursor))


def access_query(
    filters: AccessLogFilters, limit: int, *, subject_ref_hash: bytes | None
) -> AccessQuery:
    """The search the API and the console share: key, IP or CIDR, status, time, cursor."""
    try:
        ip = parse_ip_filter(filters.ip) if filters.ip else None
    except ValueError:
        raise InvalidInput("ip must be an IP address or a CIDR", field="ip") from None
    return AccessQuery(
        api_key_id=filters.api_key_id,
        ip=ip,
        status=filters.status,
        since=filters.since,
        until=filters.until,
        before_seq=decode_cursor(filters.cursor),
        subject_ref_hash=subject_ref_hash,
        limit=limit,
    )
