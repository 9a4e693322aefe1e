"""Key rotation: new tenant KEK versions, and root-key epochs.

Rotating a tenant's KEK creates version v+1 (wrapped by the current root epoch), rewraps
the subject keys in batches, and destroys the older versions once nothing live is
wrapped under them. Reads go on throughout: a subject key is read together with the KEK
version that wraps it in one statement, and writers take the current KEK row FOR SHARE,
so a version cannot be destroyed under a writer still wrapping with it.

Every step is idempotent: an interrupted rotation is finished by running it again.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from crypto.context import PURPOSE_DEPLOYMENT_SECRET, KeyContext
from crypto.keywrap import unwrap_key, wrap_key
from crypto.providers.base import RootKeyProvider
from crypto.secrets import generate_key
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.errors import UnknownTenant
from vault.services.kek_invalidation import notify_kek_destroyed
from vault.services.keyring import KeyRing, SubjectKeyRef, subject_key_context
from vault.services.tenants import hmac_key_context, kek_context

Q = Queries("keys")

# Rows per transaction: bounds how long rows stay locked and how much one retry redoes.
REWRAP_BATCH = 500


@dataclass(frozen=True)
class RotationReport:
    tenant_id: uuid.UUID
    new_version: int
    rewrapped: int
    destroyed_versions: tuple[int, ...]


async def rotate_tenant_kek(
    db: Database, keyring: KeyRing, root: RootKeyProvider, tenant_id: uuid.UUID,
    batch: int = REWRAP_BATCH,
) -> RotationReport:  # fmt: skip
    async with db.tenant_tx(tenant_id) as conn:
        if await conn.fetchval(Q.lock_tenant, tenant_id) is None:
            raise UnknownTenant("no such tenant")
        newest = await conn.fetchval(Q.newest_kek_version, tenant_id)
        new_version = int(newest) + 1
        wrapped = await asyncio.to_thread(
            root.wrap, generate_key(), kek_context(tenant_id, new_version)
        )
        await conn.execute(Q.insert_kek, tenant_id, new_version, wrapped, root.current_epoch())
        await _rewrap_hmac_key(conn, root, tenant_id)
    rewrapped = 0
    while True:
        async with db.tenant_tx(tenant_id) as conn:
            done = await _rewrap_batch(conn, keyring, tenant_id, new_version, batch)
        rewrapped += done
        if done < batch:
            break
    async with db.tenant_tx(tenant_id) as conn:
        # Locking every live version waits out writers that still wrap under an old one;
        # their keys are then rewrapped here before the old versions go.
        await conn.fetch(Q.live_kek_versions, tenant_id)
        while done := await _rewrap_batch(conn, keyring, tenant_id, new_version, batch):
            rewrapped += done
        destroyed = tuple(
            r["version"] for r in await conn.fetch(Q.destroy_old_keks, tenant_id, new_version)
        )
        if destroyed:
            await notify_kek_destroyed(conn, tenant_id)
    keyring.keks.drop(tenant_id, list(destroyed))
    return RotationReport(tenant_id, new_version, rewrapped, destroyed)


async def _rewrap_batch(
    conn: Connection, keyring: KeyRing, tenant_id: uuid.UUID, new_version: int, batch: int
) -> int:
    rows = await conn.fetch(Q.subject_keys_under_old_kek, tenant_id, new_version, batch)
    new_kek = await keyring.kek(conn, tenant_id, new_version)
    for row in rows:
        ref = SubjectKeyRef(
            tenant_id, row["id"], row["subject_id"], row["category"], row["generation"]
        )
        old_kek = await keyring.kek(conn, tenant_id, row["kek_version"])
        key = unwrap_key(
            old_kek, bytes(row["wrapped_key"]), subject_key_context(ref, row["kek_version"])
        )
        rewrapped = wrap_key(new_kek, key, subject_key_context(ref, new_version))
        await conn.execute(Q.rewrap_subject_key, tenant_id, row["id"], new_version, rewrapped)
    return len(rows)


async def _rewrap_hmac_key(conn: Connection, root: RootKeyProvider, tenant_id: uuid.UUID) -> None:
    row = await conn.fetchrow(Q.hmac_key_for_update, tenant_id)
    if row is None or row["root_epoch"] == root.current_epoch():
        return
    context = hmac_key_context(tenant_id)
    key = await asyncio.to_thread(root.unwrap, bytes(row["wrapped_key"]), context)
    wrapped = await asyncio.to_thread(root.wrap, key, context)
    await conn.execute(Q.rewrap_hmac_key, tenant_id, wrapped, root.current_epoch())


async def rewrap_deployment_secrets(db: Database, root: RootKeyProvider) -> int:
    """Move the deployment secrets to the current root epoch."""
    moved = 0
    async with db.untenanted_tx() as conn:
        for row in await conn.fetch(Q.deployment_secrets_for_update):
            if row["root_epoch"] == root.current_epoch():
                continue
            context = KeyContext(purpose=PURPOSE_DEPLOYMENT_SECRET, key_id=row["name"])
            secret = await asyncio.to_thread(root.unwrap, bytes(row["wrapped"]), context)
            wrapped = await asyncio.to_thread(root.wrap, secret, context)
            await conn.execute(
                Q.rewrap_deployment_secret, row["name"], wrapped, root.current_epoch()
            )
            moved += 1
    return moved
