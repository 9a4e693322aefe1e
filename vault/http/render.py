"""JSON rendering of domain values: ISO 8601 times, UUIDs and networks as strings."""

from __future__ import annotations

import ipaddress
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, uuid.UUID | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"cannot render {type(value).__name__}")


def rfc3339(value: datetime) -> str:
    """UTC, ending in Z (API.md, Conventions)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, default=_default, ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)
