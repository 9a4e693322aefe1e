"""Subject and data keys: bound to their context, destroyed in the caller's transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
import pytest

from crypto.errors import IntegrityError
from tests.keys_support import insert_subject, new_data_key
from tests.support import Tenant
from vault.config import Settings
from vault.db.database import Connection
from vault.errors import Conflict, KeyDestroyed
from vault.runtime import OperatorContext, operator_context
from vault.services.holds import PgHoldCheck
from vault.services.keyring import KeyRing, artefact_object


@asynccontextmanager
async def vault_ops(settings: Settings, url: str) -> AsyncIterator[OperatorContext]:
    async with operator_context(settings, url) as ctx:
        yield ctx


async def _as_owner(url: str, statement: str, *args: object) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


class FixedHolds:
    def __init__(self, held: dict[str, list[uuid.UUID]]) -> None:
        self.held = held

    async def holds_covering(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        categories: Sequence[str],
    ) -> dict[str, list[uuid.UUID]]:
        return {c: ids for c, ids in self.held.items() if c in categories}


def test_data_key_opens_again_with_the_same_bytes(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> None:
        async with vault_ops(settings, database_url) as ctx:
            subject = await insert_subject(ctx.db, tenant.id)
            async with ctx.db.tenant_tx(tenant.id) as conn:
                ref = await ctx.keyring.subject_key_for_write(
                    conn, tenant.id, subject, "recording", 1
                )
                created = await ctx.keyring.new_data_key(conn, ref, "artefact")
            fresh = KeyRing(ctx.root, PgHoldCheck())  # nothing cached: unwraps from the database
            async with ctx.db.tenant_tx(tenant.id) as conn:
                opened = await fresh.data_key(conn, tenant.id, created.id)
                again = await fresh.subject_key_for_write(conn, tenant.id, subject, "recording", 1)
            assert opened.key == created.key
            this = artefact_object(uuid.uuid4())
            assert opened.content_context(this) == created.content_context(this)
            assert again.id == ref.id

    asyncio.run(run())


@pytest.mark.parametrize("target", ["other subject", "other category", "other generation"])
def test_subject_key_moved_to_another_row_fails_to_unwrap(
    settings: Settings, database_url: str, tenant: Tenant, target: str
) -> None:
    async def run() -> None:
        async with vault_ops(settings, database_url) as ctx:
            alice = await insert_subject(ctx.db, tenant.id)
            bob = await insert_subject(ctx.db, tenant.id)
            destination = {
                "other subject": (bob, "recording", 1),
                "other category": (alice, "billing", 1),
                "other generation": (alice, "recording", 2),
            }[target]
            async with ctx.db.tenant_tx(tenant.id) as conn:
                source = await ctx.keyring.subject_key_for_write(
                    conn, tenant.id, alice, "recording", 1
                )
            if target == "other generation":  # an erasure request moved alice on
                await _as_owner(
                    database_url, "UPDATE subjects SET generation = 2 WHERE id = $1", alice
                )
            async with ctx.db.tenant_tx(tenant.id) as conn:
                victim = await ctx.keyring.subject_key_for_write(conn, tenant.id, *destination)
            await _as_owner(
                database_url,
                "UPDATE subject_keys SET wrapped_key ="
                " (SELECT wrapped_key FROM subject_keys WHERE id = $1) WHERE id = $2",
                source.id,
                victim.id,
            )
            async with ctx.db.tenant_tx(tenant.id) as conn:
                with pytest.raises(IntegrityError):
                    await KeyRing(ctx.root, PgHoldCheck()).subject_key(conn, tenant.id, victim.id)

    asyncio.run(run())


def test_kek_moved_to_another_tenant_fails_to_unwrap(
    settings: Settings, database_url: str, new_tenant: object
) -> None:
    first, second = new_tenant(), new_tenant()  # type: ignore[operator]

    async def run() -> None:
        await _as_owner(
            database_url,
            "UPDATE tenant_keks SET wrapped_key = (SELECT wrapped_key FROM tenant_keks"
            " WHERE tenant_id = $1 AND version = 1) WHERE tenant_id = $2 AND version = 1",
            first.id,
            second.id,
        )
        async with vault_ops(settings, database_url) as ctx, ctx.db.tenant_tx(second.id) as conn:
            with pytest.raises(IntegrityError):
                await KeyRing(ctx.root, PgHoldCheck()).kek(conn, second.id, 1)

    asyncio.run(run())


def test_data_key_moved_to_another_data_key_row_fails(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> None:
        async with vault_ops(settings, database_url) as ctx:
            subject = await insert_subject(ctx.db, tenant.id)
            async with ctx.db.tenant_tx(tenant.id) as conn:
                ref = await ctx.keyring.subject_key_for_write(
                    conn, tenant.id, subject, "account", 1
                )
                one = await ctx.keyring.new_data_key(conn, ref, "record")
                two = await ctx.keyring.new_data_key(conn, ref, "record")
            await _as_owner(
                database_url,
                "UPDATE data_keys SET wrapped_key ="
                " (SELECT wrapped_key FROM data_keys WHERE id = $1) WHERE id = $2",
                one.id,
                two.id,
            )
            async with ctx.db.tenant_tx(tenant.id) as conn:
                with pytest.raises(IntegrityError):
                    await ctx.keyring.data_key(conn, tenant.id, two.id)

    asyncio.run(run())


def test_destroyed_data_key_keeps_only_metadata(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> None:
        async with vault_ops(settings, database_url) as ctx:
            _, key = await new_data_key(ctx, tenant.id, "account", "record")
            async with ctx.db.tenant_tx(tenant.id) as conn:
                assert await ctx.keyring.destroy_data_key(conn, tenant.id, key.id)
                assert not await ctx.keyring.destroy_data_key(conn, tenant.id, key.id)
            async with ctx.db.tenant_tx(tenant.id) as conn:
                row = await conn.fetchrow("SELECT * FROM data_keys WHERE id = $1", key.id)
                with pytest.raises(KeyDestroyed):
                    await ctx.keyring.data_key(conn, tenant.id, key.id)
            assert row is not None
            assert row["wrapped_key"] is None
            assert row["destroyed_at"] is not None
            assert row["subject_key_id"] == key.subject_key.id

    asyncio.run(run())


def test_destroy_rolls_back_with_the_callers_transaction(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def run() -> None:
        async with vault_ops(settings, database_url) as ctx:
            _, key = await new_data_key(ctx, tenant.id, "account", "record")
            with pytest.raises(RuntimeError):
                async with ctx.db.tenant_tx(tenant.id) as conn:
                    await ctx.keyring.destroy_data_key(conn, tenant.id, key.id)
                    raise RuntimeError("the caller's state change failed")
            async with ctx.db.tenant_tx(tenant.id) as conn:
                assert (await ctx.keyring.data_key(conn, tenant.id, key.id)).key == key.key

    asyncio.run(run())


def test_held_data_key_is_not_destroyed_and_the_holds_are_named(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    hold = uuid.uuid4()

    async def run() -> None:
        async with vault_ops(settings, database_url) as ctx:
            keyring = KeyRing(ctx.root, FixedHolds({"billing": [hold]}))
            _, key = await new_data_key(ctx, tenant.id, "billing", "record")
            async with ctx.db.tenant_tx(tenant.id) as conn:
                with pytest.raises(Conflict) as refused:
                    await keyring.destroy_data_key(conn, tenant.id, key.id)
            assert refused.value.extra["holds"] == [str(hold)]
            async with ctx.db.tenant_tx(tenant.id) as conn:
                assert (await keyring.data_key(conn, tenant.id, key.id)).key == key.key

    asyncio.run(run())


def test_subject_keys_are_destroyed_except_held_categories(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    hold = uuid.uuid4()

    async def run() -> None:
        async with vault_ops(settings, database_url) as ctx:
            # The subject keys' hold check is the database's (dv_holds_covering, asked by
            # dv_destroy_subject_keys): a hold placed there, not a HoldCheck's answer.
            keyring = KeyRing(ctx.root, PgHoldCheck())
            subject = await insert_subject(ctx.db, tenant.id)
            await _as_owner(
                database_url,
                "INSERT INTO holds (tenant_id, id, subject_ref_hash, categories, reason,"
                " reference, placed_by) SELECT tenant_id, $2, ref_hash, '{billing}',"
                " 'litigation', 'L-1', $2 FROM subjects WHERE id = $1",
                subject, hold,
            )  # fmt: skip
            async with ctx.db.tenant_tx(tenant.id) as conn:
                keys = {}
                for category in ("recording", "billing", "account"):
                    ref = await keyring.subject_key_for_write(conn, tenant.id, subject, category, 1)
                    keys[category] = await keyring.new_data_key(conn, ref, "record")
            # An erasure request moves the subject to its next generation.
            await _as_owner(
                database_url, "UPDATE subjects SET generation = 2 WHERE id = $1", subject
            )
            async with ctx.db.tenant_tx(tenant.id) as conn:
                later = await keyring.subject_key_for_write(
                    conn, tenant.id, subject, "recording", 2
                )
            async with ctx.db.tenant_tx(tenant.id) as conn:
                destroyed, kept = await keyring.destroy_subject_keys(conn, tenant.id, subject, 1)
            assert sorted(d.category for d in destroyed) == ["account", "recording"]
            assert [(k.category, k.hold_ids) for k in kept] == [("billing", (hold,))]
            async with ctx.db.tenant_tx(tenant.id) as conn:
                for category in ("recording", "account"):
                    with pytest.raises(KeyDestroyed):
                        await KeyRing(ctx.root, PgHoldCheck()).data_key(
                            conn, tenant.id, keys[category].id
                        )
                assert (await keyring.data_key(conn, tenant.id, keys["billing"].id)).key == keys[
                    "billing"
                ].key
                # The next generation is a new life, untouched by the erasure of generation 1.
                await keyring.subject_key(conn, tenant.id, later.id)

    asyncio.run(run())
