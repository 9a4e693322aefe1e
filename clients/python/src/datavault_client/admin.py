"""API keys and the tenant's settings and closure (admin scope)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from datavault_client import _routes as R
from datavault_client._fields import Fields
from datavault_client._transport import JsonBody, Transport, format_time, json_of
from datavault_client.models import ApiKey, Closure, CreatedApiKey, Tenant, TenantSettings
from datavault_client.secret import Secret

_UNCHANGED: Any = object()


class ApiKeys:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(
        self, *, name: str, scopes: Sequence[str], owner: str | None = None,
        allowed_cidrs: Sequence[str] | None = None, expires_at: datetime | None = None,
        secret: Secret | None = None, idempotency_key: str | None = None,
    ) -> CreatedApiKey:  # fmt: skip
        """A new key; its `secret` is in the answer this once. `owner` (the person who
        holds it) is required for compliance and admin keys. `secret`: bring your own (at
        least 32 characters, not guessable)."""
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if owner is not None:
            body["owner"] = owner
        if allowed_cidrs is not None:
            body["allowed_cidrs"] = list(allowed_cidrs)
        if expires_at is not None:
            body["expires_at"] = format_time(expires_at)
        if secret is not None:
            body["secret"] = secret.reveal()
        response = self._t.call(
            R.CREATE_API_KEY, body=JsonBody(body), idempotency_key=idempotency_key
        )
        return CreatedApiKey.parse(Fields(json_of(response, R.CREATE_API_KEY), "api key"))

    def list(self) -> list[ApiKey]:
        response = self._t.call(R.LIST_API_KEYS)
        fields = Fields(json_of(response, R.LIST_API_KEYS), "api keys")
        return [ApiKey.parse(f) for f in fields.objects("items")]

    def revoke(self, key_id: str) -> None:
        """Revoked at once; the tenant's last admin key cannot be (`Conflict`)."""
        self._t.call(R.REVOKE_API_KEY, {"key_id": key_id})


class TenantAdmin:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def get(self) -> Tenant:
        response = self._t.call(R.GET_TENANT)
        return Tenant.parse(Fields(json_of(response, R.GET_TENANT), "tenant"))

    def update_settings(
        self, *,
        retention: Mapping[str, Mapping[str, int | None]] | None = None,
        erasure_grace_hours: int | None = None,
        erasure_rate_limit_per_hour: int | None = _UNCHANGED,
        categories: Sequence[str] | None = None,
    ) -> TenantSettings:  # fmt: skip
        """Change what is given; the rest stays. `retention`: {category:
        {"delete_after_days": n|None, "keep_at_least_days": n|None}}.
        `erasure_rate_limit_per_hour=None` removes the brake (leave it out to keep it)."""
        patch: dict[str, Any] = {}
        if retention is not None:
            patch["retention"] = {name: dict(rule) for name, rule in retention.items()}
        if erasure_grace_hours is not None:
            patch["erasure_grace_hours"] = erasure_grace_hours
        if erasure_rate_limit_per_hour is not _UNCHANGED:
            patch["erasure_rate_limit_per_hour"] = erasure_rate_limit_per_hour
        if categories is not None:
            patch["categories"] = list(categories)
        response = self._t.call(R.UPDATE_SETTINGS, body=JsonBody(patch))
        return TenantSettings.parse(Fields(json_of(response, R.UPDATE_SETTINGS), "settings"))

    def request_closure(self, *, reason: str, idempotency_key: str | None = None) -> Closure:
        """Schedule the destruction of all the tenant's keys after the closure delay."""
        response = self._t.call(
            R.REQUEST_CLOSURE, body=JsonBody({"reason": reason}), idempotency_key=idempotency_key
        )
        return Closure.parse(Fields(json_of(response, R.REQUEST_CLOSURE), "closure"))

    def cancel_closure(self) -> Closure:
        response = self._t.call(R.CANCEL_CLOSURE)
        return Closure.parse(Fields(json_of(response, R.CANCEL_CLOSURE), "closure"))
