"""The tenant, its settings, its closure, and its API keys (admin scope)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from vault.domain.api_keys import (
    KEY_NAME_MAX_LENGTH,
    OWN_SECRET_MAX_LENGTH,
    OWN_SECRET_MIN_LENGTH,
    OWNER_MAX_LENGTH,
)
from vault.domain.categories import CATEGORY_PATTERN
from vault.domain.retention import MAX_RETENTION_DAYS
from vault.domain.scopes import Scope
from vault.domain.tenant_settings import (
    MAX_ERASURE_GRACE_HOURS,
    MAX_TENANT_CATEGORIES,
    TenantSettings,
)
from vault.http.models.common import AwareTime, Time
from vault.services.api_keys import MAX_ALLOWED_CIDRS, CreatedKey
from vault.services.closure import MAX_REASON

TenantStatus = Literal["active", "closing", "closed"]
Days = Annotated[int, Meta(ge=1, le=MAX_RETENTION_DAYS)]


class RetentionRule(Struct):
    """Days, or null for no rule."""

    delete_after_days: int | None
    keep_at_least_days: int | None


class RetentionRuleChange(Struct, forbid_unknown_fields=True, kw_only=True):
    """Days (1 to 36,500) or null; a field left out stays as it was."""

    delete_after_days: Days | UnsetType | None = UNSET
    keep_at_least_days: Days | UnsetType | None = UNSET


class PendingRetention(Struct):
    """A shortened or removed keep_at_least_days: data written before changed_at is kept
    as previous_keep_at_least_days said until effective_at (the closure delay)."""

    category: str
    keep_at_least_days: int | None
    previous_keep_at_least_days: int
    changed_at: Time
    effective_at: Time


class Settings(Struct):
    """A tenant's settings, whole."""

    categories: list[str]
    max_artefact_bytes: dict[str, int]
    erasure_grace_hours: int
    erasure_rate_limit_per_hour: int | None
    retention: dict[str, RetentionRule]
    pending: list[PendingRetention]

    @classmethod
    def of(cls, settings: TenantSettings) -> Settings:
        return cls(
            categories=list(settings.categories),
            max_artefact_bytes=dict(settings.max_artefact_bytes),
            erasure_grace_hours=settings.erasure_grace_hours,
            erasure_rate_limit_per_hour=settings.erasure_rate_limit_per_hour,
            retention={
                category: RetentionRule(rule.delete_after_days, rule.keep_at_least_days)
                for category, rule in sorted(settings.retention.items())
            },
            pending=[
                PendingRetention(
                    p.category,
                    p.keep_at_least_days,
                    p.previous_days,
                    p.changed_at,
                    p.effective_at,
                )
                for p in settings.pending
            ],
        )


Category = Annotated[str, Meta(pattern=CATEGORY_PATTERN.pattern)]


class SettingsChange(Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out stay as they were."""

    categories: (
        Annotated[
            list[Category],
            Meta(
                max_length=MAX_TENANT_CATEGORIES,
                description="The tenant's own categories (lower-case slugs) beside the "
                "built-in ones",
            ),
        ]
        | UnsetType
    ) = UNSET
    max_artefact_bytes: (
        Annotated[
            dict[str, Annotated[int, Meta(ge=1)] | None],
            Meta(
                description="category -> largest artefact in bytes (at most the deployment's "
                "DATAVAULT_MAX_ARTEFACT_BYTES); null removes the category's limit"
            ),
        ]
        | UnsetType
    ) = UNSET
    retention: dict[str, RetentionRuleChange] | UnsetType = UNSET
    erasure_grace_hours: Annotated[int, Meta(ge=0, le=MAX_ERASURE_GRACE_HOURS)] | UnsetType = UNSET
    erasure_rate_limit_per_hour: (
        Annotated[int, Meta(ge=1, description="null: no brake")] | UnsetType | None
    ) = UNSET


class Tenant(Struct):
    id: uuid.UUID
    slug: str
    status: TenantStatus
    created_at: Time
    closure_due_at: Time | None
    settings: Settings


Reason = Annotated[str, Meta(min_length=1, max_length=MAX_REASON)]


class ClosureRequest(Struct, kw_only=True):
    reason: Reason


class Closure(Struct):
    """Where the tenant's closure stands."""

    status: TenantStatus
    closure_requested_at: Time | None
    closure_due_at: Time | None
    closed_at: Time | None

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> Closure:
        return cls(
            state["status"], state["closure_requested_at"], state["closure_due_at"],
            state["closed_at"],
        )  # fmt: skip


# --- API keys ----------------------------------------------------------------------------


class ApiKeyCreation(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=KEY_NAME_MAX_LENGTH)]
    scopes: Annotated[list[Scope], Meta(min_length=1)]
    owner: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=OWNER_MAX_LENGTH,
                description="The person who holds the key (e.g. an e-mail or staff id); "
                "required for compliance and admin keys. Two-person hold releases need "
                "keys of two owners.",
            ),
        ]
        | None
    ) = None
    allowed_cidrs: Annotated[
        list[str],
        Meta(max_length=MAX_ALLOWED_CIDRS, description="Addresses or networks the key works from"),
    ] = []
    expires_at: AwareTime | None = None
    secret: (
        Annotated[
            str,
            Meta(
                min_length=OWN_SECRET_MIN_LENGTH,
                max_length=OWN_SECRET_MAX_LENGTH,
                description="Bring your own key: at least 32 characters, estimated >= 128 bits.",
            ),
        ]
        | None
    ) = None


class ApiKey(Struct):
    """An API key as listed: never its secret."""

    id: uuid.UUID
    prefix: str
    name: str
    owner: str | None
    scopes: list[Scope]
    allowed_cidrs: list[str]
    bring_your_own: bool
    expires_at: Time | None
    created_at: Time
    created_by: uuid.UUID | None
    revoked_at: Time | None
    last_used_at: Time | None
    last_used_ip: str | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ApiKey:
        return cls(
            row["id"], row["prefix"], row["name"], row["owner"], list(row["scopes"]),
            list(row["allowed_cidrs"] or []), row["bring_your_own"], row["expires_at"],
            row["created_at"], row["created_by"], row["revoked_at"], row["last_used_at"],
            row["last_used_ip"],
        )  # fmt: skip


class ApiKeyList(Struct):
    items: list[ApiKey]


class CreatedApiKey(Struct):
    """A new key, with its secret: shown in this answer only (the vault keeps a keyed
    hash)."""

    id: uuid.UUID
    prefix: str
    name: str
    owner: str | None
    scopes: list[Scope]
    allowed_cidrs: list[str]
    expires_at: Time | None
    created_at: Time
    secret: str

    @classmethod
    def of(cls, created: CreatedKey) -> CreatedApiKey:
        return cls(
            created.id, created.prefix, created.name, created.owner, sorted(created.scopes),
            [str(n) for n in created.allowed_cidrs], created.expires_at, created.created_at,
            created.token.reveal(),
        )  # fmt: skip
