"""Shaping service values for templates: hold activity, overdue erasures, who did what."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from vault.domain.erasures import ErasureStatus, is_overdue
from vault.domain.holds import TWO_KEY_RELEASE, HoldReason
from vault.http.models.erasures import Erasure
from vault.http.state import VaultState

EXPIRING_SOON = timedelta(days=7)
# Open erasures are those the worker has yet to finish; held ones are done but for what
# holds and statutory retention keep, so they are never overdue.
OPEN_STATUSES = (ErasureStatus.SCHEDULED, ErasureStatus.IN_PROGRESS, ErasureStatus.HELD)


def hold_view(hold: dict[str, Any], now: datetime) -> dict[str, Any]:
    expires_at = hold["expires_at"]
    active = bool(hold["in_force"])  # dv_hold_in_force (migration 0016), as read
    return {
        **hold,
        "active": active,
        "expiring_soon": active and expires_at is not None and expires_at - now <= EXPIRING_SOON,
        "scope": "subject" if hold["subject_ref_hash"] else "tenant",
        "ref_hash": hold["subject_ref_hash"].hex() if hold["subject_ref_hash"] else None,
        "two_key": HoldReason(hold["reason"]) in TWO_KEY_RELEASE,
    }


def erasure_view(erasure: dict[str, Any], now: datetime) -> dict[str, Any]:
    # The API's rendering, with times and ids left as values for the templates.
    view: dict[str, Any] = msgspec.to_builtins(
        Erasure.of(erasure), builtin_types=(datetime, uuid.UUID)
    )
    view["overdue"] = is_overdue(erasure["status"], erasure["due_at"], now)
    return view


async def key_prefixes(state: VaultState, tenant_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Journal entries name API keys by id; people know them by their public prefix."""
    return {row["id"]: row["prefix"] for row in await state.api_keys.list(tenant_id)}
