"""Times as the API writes them: RFC 3339 in UTC, ending in Z (cursors use it too; JSON
answers are rendered by their models, vault/http/operation.py)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(value: datetime) -> str:
    """UTC, ending in Z (docs/api.md, Conventions)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- kept only for the handlers main added since the typed API (webhooks, disclosures,
# playback links) until they are converted to it in the commit after this merge ---

import ipaddress  # noqa: E402
import json  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from starlette.responses import Response  # noqa: E402


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


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, default=_default, ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)
