"""Tenants: creation (with their first KEK and admin key) and the operator's directory."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from crypto.context import PURPOSE_TENANT_HMAC_KEY, PURPOSE_TENANT_KEK, KeyContext
from crypto.providers.base import RootKeyProvider
from crypto.secrets import generate_key
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.api_keys import FIRST_KEY_OWNER
from vault.domain.scopes import Scope
from vault.domain.secret_text import SecretText
from vault.domain.tenant_settings import TenantSettings
from vault.errors import Conflict, InvalidInput, NotFound, UnknownTenant
from vault.services.api_keys import ApiKeyService
from vault.services.ledger_standing import record_retention

Q = Queries("tenants")

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


@dataclass(frozen=True)
class TenantSummary:
    id: uuid.UUID
    slug: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class CreatedTenant:
    id: uuid.UUID
    slug: str
    admin_key: SecretText


def kek_context(tenant_id: uuid.UUID, version: int) -> KeyContext:
    return KeyContext(purpose=PURPOSE_TENANT_KEK, tenant_id=str(tenant_id), version=version)


def hmac_key_context(tenant_id: uuid.UUID) -> KeyContext:
    return KeyContext(purpose=PURPOSE_TENANT_HMAC_KEY, tenant_id=str(tenant_id))


def check_slug(slug: str) -> None:
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            "slug must be 2-63 characters: lower-case letters, digits and '-', "
            "starting with a letter or digit",
            field="slug",
        )


async def create_tenant(
    db: Database, root: RootKeyProvider, api_keys: ApiKeyService, slug: str,
    owner: str = FIRST_KEY_OWNER,
) -> CreatedTenant:  # fmt: skip
    check_slug(slug)
    tenant_id = uuid.uuid4()
    kek = generate_key()
    wrapped = await asyncio.to_thread(root.wrap, kek, kek_context(tenant_id, 1))
    wrapped_hmac = await asyncio.to_thread(root.wrap, generate_key(), hmac_key_context(tenant_id))
    try:
        async with db.tenant_tx(tenant_id) as conn:
            await conn.execute(Q.insert_tenant, tenant_id, slug)
            await conn.execute(Q.insert_kek, tenant_id, 1, wrapped, root.current_epoch())
            await conn.execute(Q.insert_hmac_key, tenant_id, wrapped_hmac, root.current_epoch())
            created = await api_keys.create_in(
                conn, tenant_id, name="first admin key", scopes=frozenset({Scope.ADMIN}),
                owner=owner,
            )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a tenant with slug {slug!r} exists already") from None
    return CreatedTenant(tenant_id, slug, created.token)


async def list_tenants(db: Database) -> list[TenantSummary]:
    async with db.untenanted_tx() as conn:
        rows = await conn.fetch(Q.directory)
    return [TenantSummary(r["id"], r["slug"], r["status"], r["created_at"]) for r in rows]


async def find_tenant(db: Database, slug: str) -> TenantSummary:
    for tenant in await list_tenants(db):
        if tenant.slug == slug:
            return tenant
    raise UnknownTenant(f"no tenant with slug {slug!r}")


@dataclass(frozen=True)
class TenantDetails:
    id: uuid.UUID
    slug: str
    status: str
    created_at: datetime
    closure_due_at: datetime | None
    settings: TenantSettings  # as of now: pending changes that took effect are gone


async def get_tenant(db: Database, tenant_id: uuid.UUID) -> TenantDetails:
    async with db.tenant_tx(tenant_id) as conn:
        row = await conn.fetchrow(Q.get_tenant, tenant_id)
    if row is None:
        raise NotFound("no such tenant")
    settings = TenantSettings.from_document(json.loads(row["settings"]))
    return TenantDetails(
        row["id"], row["slug"], row["status"], row["created_at"], row["closure_due_at"],
        settings.as_of(datetime.now(UTC)),
    )  # fmt: skip


async def load_settings(conn: Connection, tenant_id: uuid.UUID) -> TenantSettings:
    document = await conn.fetchval(Q.settings, tenant_id)
    return TenantSettings.from_document(json.loads(document) if document else {})


async def load_settings_kept(conn: Connection, tenant_id: uuid.UUID) -> TenantSettings:
    """The settings, unchanged until the caller's transaction ends: a change waits for its
    commit (the tenant's row key-share locked), so what the caller decides on them still
    holds when it commits. The erasure executor decides a whole batch on them."""
    document = await conn.fetchval(Q.settings_key_share, tenant_id)
    return TenantSettings.from_document(json.loads(document) if document else {})


async def update_settings(
    db: Database, tenant_id: uuid.UUID, patch: dict[str, Any], deployment_max: int,
    closure_delay: timedelta, now: datetime | None = None,
) -> TenantSettings:  # fmt: skip
    """The settings after `patch`, as of now. `closure_delay`: how long a shortened
    statutory retention waits before it binds data written before the change
    (DATAVAULT_CLOSURE_DELAY_DAYS)."""
    now = now or datetime.now(UTC)
    async with db.tenant_tx(tenant_id) as conn:
        document = await conn.fetchval(Q.settings_for_update, tenant_id)
        current = TenantSettings.from_document(json.loads(document) if document else {})
        updated = current.apply(patch, deployment_max, now, closure_delay)
        await conn.execute(Q.store_settings, tenant_id, json.dumps(updated.to_document()))
        if (updated.retention, updated.pending) != (current.retention, current.pending):
            # A restored backup must not bring back the retention it replaced
            # (vault/services/ledger_standing.py).
            await record_retention(conn, tenant_id, updated)
    return updated.as_of(now)
