"""Shaping service values for templates: hold activity, overdue erasures, who did what."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from vault.domain.holds import TWO_KEY_RELEASE, HoldReason
from vault.http.erasures import render_erasure
from vault.http.state import VaultState

EXPIRING_SOON = timedelta(days=7)
# Open erasures are those the worker has yet to finish; held ones are done but for what
# holds and statutory retention keep, so they are never overdue.
OPEN_STATUSES = ("scheduled", "in_progress", "held")


def hold_view(hold: dict[str, Any], now: datetime) -> dict[str, Any]:
    expires_at = hold["expires_at"]
    active = hold["released_at"] is None and (expires_at is None or expires_at > now)
    return {
        **hold,
        "active": active,
        "expiring_soon": active and expires_at is not None and expires_at - now <= EXPIRING_SOON,
        "scope": "subject" if hold["subject_ref_hash"] else "tenant",
        "ref_hash": hold["subject_ref_hash"].hex() if hold["subject_ref_hash"] else None,
        "two_key": HoldReason(hold["reason"]) in TWO_KEY_RELEASE,
    }


def erasure_view(erasure: dict[str, Any], now: datetime) -> dict[str, Any]:
    view = render_erasure(erasure)
    view["overdue"] = erasure["status"] in ("scheduled", "in_progress") and erasure["due_at"] < now
    return view


async def key_prefixes(state: VaultState, tenant_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Journal entries name API keys by id; people know them by their public prefix."""
    return {row["id"]: row["prefix"] for row in await state.api_keys.list(tenant_id)}
