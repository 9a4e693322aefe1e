"""Webhook signing secrets under the tenant KEK: sealed when an endpoint is created, opened
for each delivery, rewrapped by a key rotation before the old KEK version is destroyed
(vault/services/key_rotation.py). The bytes leave this module only as SecretBytes, and
only towards the signature (crypto/webhooks.py) or, once, the creating answer."""

from __future__ import annotations

import uuid

from crypto.secrets import SecretBytes
from crypto.webhooks import (
    new_webhook_secret,
    rewrap_webhook_secret,
    unwrap_webhook_secret,
    webhook_secret_context,
    wrap_webhook_secret,
)
from vault.db.database import Connection
from vault.db.sql import Queries
from vault.errors import KeyDestroyed
from vault.services.keyring import KeyRing

K = Queries("keys")
W = Queries("webhooks")


async def seal_new_secret(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> tuple[SecretBytes, bytes, int]:
    """(secret, wrapped, KEK version): a fresh secret wrapped under the tenant's current
    KEK, which stays locked FOR SHARE until the caller commits, so a rotation cannot
    destroy that version while the new row still needs it."""
    current = await conn.fetchrow(K.current_kek_for_write, tenant_id)
    if current is None:
        raise KeyDestroyed("the tenant has no live key-encryption key")
    version = int(current["version"])
    kek = await keyring.kek(conn, tenant_id, version)
    secret = new_webhook_secret()
    context = webhook_secret_context(str(tenant_id), str(endpoint_id), version)
    return secret, wrap_webhook_secret(kek, secret, context), version


async def open_secret(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, endpoint_id: uuid.UUID,
    kek_version: int, wrapped: bytes,
) -> SecretBytes:  # fmt: skip
    """KeyDestroyed once the tenant's keys are gone (a closed tenant); IntegrityError if
    the wrapped secret was altered or moved to another endpoint or tenant."""
    kek = await keyring.kek(conn, tenant_id, kek_version)
    context = webhook_secret_context(str(tenant_id), str(endpoint_id), kek_version)
    return unwrap_webhook_secret(kek, bytes(wrapped), context)


async def rewrap_secrets(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, new_version: int
) -> int:
    """Every live endpoint's secret moved under KEK version `new_version`, in the caller's
    transaction (which holds the old versions' locks, so none is destroyed meanwhile)."""
    rows = await conn.fetch(W.secrets_under_old_keks, tenant_id, new_version)
    if not rows:
        return 0
    new_kek = await keyring.kek(conn, tenant_id, new_version)
    for row in rows:
        endpoint = str(row["id"])
        old_version = int(row["kek_version"])
        rewrapped = rewrap_webhook_secret(
            await keyring.kek(conn, tenant_id, old_version),
            new_kek,
            bytes(row["secret_wrapped"]),
            webhook_secret_context(str(tenant_id), endpoint, old_version),
            webhook_secret_context(str(tenant_id), endpoint, new_version),
        )
        await conn.execute(W.rewrap_secret, tenant_id, row["id"], rewrapped, new_version)
    return len(rows)
