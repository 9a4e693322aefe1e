"""Key rotation: new tenant KEK versions, and root-key epochs.

Rotating a tenant's KEK creates version v+1 (wrapped by the current root epoch), gives
every live subject key new bytes wrapped under it and rewraps every live data key under
those, in batches of subjects (each batch one transaction holding the subjects' row
locks), and destroys the older versions once nothing live is wrapped under them. The
new subject-key bytes are what make an old backup's copies unreadable once the old
epoch retires: a data key deleted, replaced or expired before the rotation survives there
only wrapped under subject-key bytes that exist nowhere else. Reads go on throughout: a
subject key is read together with the KEK version that wraps it in one statement, a data
key with its subject key, and a writer whose subject key was rewrapped since it read it
is refused by the database and reads it again. Webhook signing secrets, also wrapped under
the KEK, are rewrapped in the transaction that destroys the old versions.

Every step is idempotent: an interrupted rotation is finished by running it again.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from crypto.context import PURPOSE_DEPLOYMENT_SECRET, KeyContext
from crypto.providers.base import RootKeyProvider
from crypto.secrets import generate_key
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.tenant_keys import holds_keys
from vault.errors import TenantClosed, UnknownTenant
from vault.services.kek_invalidation import notify_kek_destroyed
from vault.services.keyring import KeyRing
from vault.services.subject_rewrap import REWRAP_BATCH, RewrapCounts, rewrap_subjects
from vault.services.tenants import hmac_key_context, kek_context
from vault.services.webhook_secrets import rewrap_secrets

Q = Queries("keys")

# Rounds of "rewrap what is left, then check under the old versions' locks" before giving
# up: a round repeats only if a writer created a subject key under an old version meanwhile.
_FINISH_ATTEMPTS = 5


@dataclass(frozen=True)
class RotationReport:
    tenant_id: uuid.UUID
    new_version: int
    rewrapped: int  # subject keys, each given new bytes
    destroyed_versions: tuple[int, ...]
    data_keys_rewrapped: int = 0


async def rotate_tenant_kek(
    db: Database, keyring: KeyRing, root: RootKeyProvider, tenant_id: uuid.UUID,
    batch: int = REWRAP_BATCH,
) -> RotationReport:  # fmt: skip
    """A new KEK version, then every live subject key with new bytes under it and every
    live data key rewrapped under those (so nothing but the retired epoch opens what an
    old backup holds), then the old versions destroyed."""
    async with db.tenant_tx(tenant_id) as conn:
        status = await conn.fetchval(Q.lock_tenant, tenant_id)
        if status is None:
            raise UnknownTenant("no such tenant")
        if not holds_keys(status):  # under the row lock: a closure cannot slip in
            raise TenantClosed("the tenant is closed: its closure destroyed its keys")
        newest = await conn.fetchval(Q.newest_kek_version, tenant_id)
        new_version = int(newest) + 1
        wrapped = await asyncio.to_thread(
            root.wrap, generate_key(), kek_context(tenant_id, new_version)
        )
        await conn.execute(Q.insert_kek, tenant_id, new_version, wrapped, root.current_epoch())
        await _rewrap_hmac_key(conn, root, tenant_id)
    counts = RewrapCounts()
    for _ in range(_FINISH_ATTEMPTS):
        await rewrap_subjects(db, keyring, tenant_id, new_version, batch, counts)
        async with db.tenant_tx(tenant_id) as conn:
            # Writers creating a subject key hold the KEK version they wrap under FOR
            # SHARE: locking the old versions waits out any that began before the new
            # version existed; a key they left under an old version sends us round again.
            await conn.fetch(Q.old_kek_versions_for_update, tenant_id, new_version)
            if await conn.fetchval(Q.live_subject_keys_under_old_kek, tenant_id, new_version):
                continue
            await rewrap_secrets(conn, keyring, tenant_id, new_version)
            destroyed = tuple(
                r["version"] for r in await conn.fetch(Q.destroy_old_keks, tenant_id, new_version)
            )
            if destroyed:
                await notify_kek_destroyed(conn, tenant_id)
        keyring.keks.drop(tenant_id, list(destroyed))
        return RotationReport(
            tenant_id, new_version, counts.subject_keys, destroyed, counts.data_keys
        )
    raise RuntimeError("subject keys kept appearing under an old KEK version; run it again")


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
