"""Small helpers shared by the black-box API tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support import Tenant, bearer


def from_ip(ip: str) -> dict[str, str]:
    """Act as client `ip`: the test server trusts X-Forwarded-For from 127.0.0.1."""
    return {"X-Forwarded-For": ip}


def create_key(
    http: httpx.Client, tenant: Tenant, scopes: list[str], **fields: Any
) -> dict[str, Any]:
    """Create a key with the tenant's admin key; returns the 201 body (with `secret`)."""
    body = {"name": f"key for {'+'.join(scopes)}", "scopes": scopes, **fields}
    response = http.post("/v1/api-keys", json=body, headers=tenant.auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def auth(key: dict[str, Any], ip: str | None = None) -> dict[str, str]:
    headers = bearer(key["secret"])
    if ip is not None:
        headers.update(from_ip(ip))
    return headers


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse a time the API returned (accepting either Z or +00:00, so that tests about
    something else do not fail on the format; the format has its own tests)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, text
    return parsed


def access_log(http: httpx.Client, key: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    """Search the access log with `key` (from 127.0.0.1); `params` are the filters."""
    response = http.get("/v1/access-log", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
