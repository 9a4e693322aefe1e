"""Red team 19: wrapped keys put back, moved or relabelled across a tenant KEK rotation
(crypto/keywrap.py, vault/services/keyring.py; DESIGN.md "Key hierarchy").

The table owner (or a restored copy of the database) rewrites rows; the vault must refuse
every such key with KeyDestroyed or the one IntegrityError, whose message names no key
bytes and no subject."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from crypto.errors import IntegrityError
from tests.keys_support import insert_subject
from tests.support import make_tenant
from vault.config import Settings
from vault.errors import KeyDestroyed
from vault.runtime import operator_context
from vault.services.holds import PgHoldCheck
from vault.services.key_rotation import rotate_tenant_kek
from vault.services.keyring import KeyRing


async def _owner(url: str, statement: str, *args: object) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


CHANGES = {
    # The subject key's wrap from before the rotation put back with its old KEK version:
    # KEK v1 is destroyed.
    "old-wrap-and-version-restored": (
        "UPDATE subject_keys SET wrapped_key = $2, kek_version = 1 WHERE id = $1",
        KeyDestroyed,
    ),
    # The old wrap labelled with the live version: it does not open under KEK v2.
    "old-wrap-under-new-version": (
        "UPDATE subject_keys SET wrapped_key = $2 WHERE id = $1",
        IntegrityError,
    ),
    # The live wrap labelled with the destroyed version (a KEK version rolled back).
    "version-rolled-back": (
        "UPDATE subject_keys SET kek_version = 1 WHERE id = $1 AND $2::bytea IS NOT NULL",
        KeyDestroyed,
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_subject_key_wrap_put_back_or_relabelled_after_rotation_is_refused(
    private_vault: Settings, change: str
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    statement, refused = CHANGES[change]

    async def run() -> None:
        async with operator_context(private_vault, url) as ctx:
            subject = await insert_subject(ctx.db, tenant.id)
            async with ctx.db.tenant_tx(tenant.id) as conn:
                ref = await ctx.keyring.subject_key_for_write(
                    conn, tenant.id, subject, "recording", 1
                )
            (backup,) = await _owner(
                url, "SELECT wrapped_key FROM subject_keys WHERE id = $1", ref.id
            )
            report = await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant.id, batch=5)
            assert report.destroyed_versions == (1,)
            await _owner(url, statement, ref.id, backup["wrapped_key"])
            fresh = KeyRing(ctx.root, PgHoldCheck())  # nothing cached
            async with ctx.db.tenant_tx(tenant.id) as conn:
                with pytest.raises(refused) as caught:
                    await fresh.subject_key(conn, tenant.id, ref.id)
            text = f"{caught.value!s} {caught.value!r}"
            for leaked in (bytes(backup["wrapped_key"]).hex()[:16], str(subject), str(ref.id)):
                assert leaked not in text

    asyncio.run(run())


def test_a_kek_wrap_moved_onto_another_version_row_is_refused(private_vault: Settings) -> None:
    """KEK v2's row given v1's wrap from a backup taken before the rotation (the KEK
    version rolled back in place): the root wrap binds the version, so it does not open."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)

    async def run() -> None:
        async with operator_context(private_vault, url) as ctx:
            (v1,) = await _owner(
                url,
                "SELECT wrapped_key FROM tenant_keks WHERE tenant_id = $1 AND version = 1",
                tenant.id,
            )
            await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant.id, batch=5)
            await _owner(
                url,
                "UPDATE tenant_keks SET wrapped_key = $2 WHERE tenant_id = $1 AND version = 2",
                tenant.id,
                v1["wrapped_key"],
            )
            fresh = KeyRing(ctx.root, PgHoldCheck())
            async with ctx.db.tenant_tx(tenant.id) as conn:
                with pytest.raises(IntegrityError) as caught:
                    await fresh.kek(conn, tenant.id, 2)
            assert bytes(v1["wrapped_key"]).hex()[:16] not in repr(caught.value)
            assert str(tenant.id) not in repr(caught.value)

    asyncio.run(run())
