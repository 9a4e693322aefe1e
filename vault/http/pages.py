"""List paging per API.md: `limit` (default 50, max 500) and an opaque `cursor`."""

from __future__ import annotations

import uuid
from datetime import datetime

from starlette.requests import Request

from vault.errors import InvalidInput
from vault.http.params import decode_cursor_parts, parse_time, query_int

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def page_params(request: Request, filters: set[str]) -> tuple[int, list[str] | None]:
    """(limit, decoded cursor parts) after refusing unknown query parameters."""
    params = request.query_params
    unknown = set(params) - filters - {"limit", "cursor"}
    if unknown:
        first, *rest = sorted(unknown)
        raise InvalidInput(
            f"unknown query parameters: {', '.join(sorted(unknown))}", field=first, also=rest
        )
    limit = query_int("limit", params.get("limit"), minimum=1, maximum=MAX_LIMIT) or DEFAULT_LIMIT
    return limit, decode_cursor_parts(params.get("cursor"), 2)


def page_after_time(parts: list[str] | None) -> tuple[datetime, uuid.UUID] | None:
    if parts is None:
        return None
    at = parse_time("cursor", parts[0])
    try:
        return (at, uuid.UUID(parts[1])) if at else None
    except ValueError:
        raise InvalidInput("cursor is not one this vault issued", field="cursor") from None


def page_after_name(parts: list[str] | None) -> tuple[datetime, str] | None:
    if parts is None:
        return None
    at = parse_time("cursor", parts[0])
    return (at, parts[1]) if at else None
