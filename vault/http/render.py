"""Times as the API writes them: RFC 3339 in UTC, ending in Z (cursors use it too; JSON
answers are rendered by their models, vault/http/operation.py)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(value: datetime) -> str:
    """UTC, ending in Z (docs/api.md, Conventions)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
