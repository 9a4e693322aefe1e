"""Answers about API keys and the tenant (admin scope)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from datavault_client._fields import Fields
from datavault_client.secret import Secret

SCOPES = frozenset({"ingest", "read", "erasure", "compliance", "admin"})


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never its secret."""

    id: str
    prefix: str
    name: str
    owner: str | None
    scopes: list[str]
    allowed_cidrs: list[str]
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None

    @classmethod
    def parse(cls, f: Fields) -> ApiKey:
        return cls(
            id=f.text("id"),
            prefix=f.text("prefix"),
            name=f.text("name"),
            owner=f.opt_text("owner"),
            scopes=f.strings("scopes"),
            allowed_cidrs=f.strings("allowed_cidrs"),
            expires_at=f.opt_time("expires_at"),
            created_at=f.time("created_at"),
            revoked_at=f.opt_time("revoked_at"),
            last_used_at=f.opt_time("last_used_at"),
            last_used_ip=f.opt_text("last_used_ip"),
        )


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key. `secret` is shown this once (the vault keeps only a keyed hash); it is a
    `Secret`, masked when printed: `secret.reveal()` to store it where it belongs."""

    id: str
    prefix: str
    name: str
    owner: str | None
    scopes: list[str]
    allowed_cidrs: list[str]
    expires_at: datetime | None
    created_at: datetime
    secret: Secret

    @classmethod
    def parse(cls, f: Fields) -> CreatedApiKey:
        return cls(
            id=f.text("id"),
            prefix=f.text("prefix"),
            name=f.text("name"),
            owner=f.opt_text("owner"),
            scopes=f.strings("scopes"),
            allowed_cidrs=f.strings("allowed_cidrs"),
            expires_at=f.opt_time("expires_at"),
            created_at=f.time("created_at"),
            secret=Secret(f.text("secret")),
        )


@dataclass(frozen=True)
class Retention:
    """Per category: shred data this old (`delete_after_days`), and keep it at least
    this long through an erasure (`keep_at_least_days`, statutory retention)."""

    delete_after_days: int | None
    keep_at_least_days: int | None


@dataclass(frozen=True)
class PendingKeep:
    """A shortened `keep_at_least_days` that binds older data only from `effective_at`."""

    category: str
    keep_at_least_days: int | None
    effective_at: datetime


@dataclass(frozen=True)
class TenantSettings:
    """The tenant's settings. `document` is the whole object as the vault sent it,
    including what this client does not model."""

    retention: dict[str, Retention]
    erasure_grace_hours: int
    erasure_rate_limit_per_hour: int | None
    categories: list[str]
    pending: list[PendingKeep]
    document: dict[str, Any]

    @classmethod
    def parse(cls, f: Fields) -> TenantSettings:
        return cls(
            retention={
                name: Retention(
                    r.opt_integer("delete_after_days"), r.opt_integer("keep_at_least_days")
                )
                for name, r in f.mapping("retention").items()
            },
            erasure_grace_hours=f.opt_integer("erasure_grace_hours") or 0,
            erasure_rate_limit_per_hour=f.opt_integer("erasure_rate_limit_per_hour"),
            categories=f.strings("categories"),
            pending=[
                PendingKeep(
                    p.text("category"), p.opt_integer("keep_at_least_days"), p.time("effective_at")
                )
                for p in f.objects("pending")
            ],
            document=f.raw(),
        )


@dataclass(frozen=True)
class Tenant:
    id: str
    slug: str
    status: str
    created_at: datetime
    closure_due_at: datetime | None
    settings: TenantSettings

    @classmethod
    def parse(cls, f: Fields) -> Tenant:
        return cls(
            id=f.text("id"),
            slug=f.text("slug"),
            status=f.text("status"),
            created_at=f.time("created_at"),
            closure_due_at=f.opt_time("closure_due_at"),
            settings=TenantSettings.parse(f.object("settings")),
        )


@dataclass(frozen=True)
class Closure:
    """The tenant's closure: `status` `closing` until `closure_due_at`, then `closed`."""

    status: str
    closure_requested_at: datetime | None
    closure_due_at: datetime | None
    closed_at: datetime | None

    @classmethod
    def parse(cls, f: Fields) -> Closure:
        return cls(
            status=f.text("status"),
            closure_requested_at=f.opt_time("closure_requested_at"),
            closure_due_at=f.opt_time("closure_due_at"),
            closed_at=f.opt_time("closed_at"),
        )
