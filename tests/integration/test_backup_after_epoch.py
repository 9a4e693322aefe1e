"""Issue #8 item 4's end-to-end claim: with a raw copy of the database taken before an
erasure, and everything the vault still holds after erasure, a new root-key epoch and
the old epoch's retirement, no erased subject's key can be unwrapped."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from crypto.errors import IntegrityError, KeyUnavailableError
from crypto.keywrap import unwrap_key
from crypto.providers.base import RootKeyProvider
from crypto.secrets import SecretBytes
from tests.api.helpers import create_key
from tests.integration.test_shred_ledger import _erase, _pg
from tests.support import bearer, make_tenant, running_server, with_database
from vault.config import Settings
from vault.runtime import operator_context
from vault.services.keyring import SubjectKeyRef, subject_key_context
from vault.services.root_epochs import list_epochs, retire_epoch, start_new_epoch
from vault.services.tenants import kek_context


async def _rows(url: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(url)  # the owner: a thief with the raw copy sees it all
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def _keks(root: RootKeyProvider, rows: list[Any]) -> tuple[list[tuple[int, SecretBytes]], int]:
    """Every KEK version that still unwraps, and how many no longer do."""
    opened, lost = [], 0
    for row in rows:
        if row["wrapped_key"] is None:
            lost += 1
            continue
        try:
            kek = root.unwrap(
                bytes(row["wrapped_key"]), kek_context(row["tenant_id"], row["version"])
            )
        except KeyUnavailableError:
            lost += 1
            continue
        opened.append((row["version"], kek))
    return opened, lost


def _opens(keks: list[tuple[int, SecretBytes]], row: Any) -> bool:
    """Whether any KEK opens this wrapped subject key, under any KEK version's context."""
    ref = SubjectKeyRef(
        row["tenant_id"], row["id"], row["subject_id"], row["category"], row["generation"]
    )
    for _, kek in keks:
        for version in {row["kek_version"], *(v for v, _ in keks)}:
            try:
                unwrap_key(kek, bytes(row["wrapped_key"]), subject_key_context(ref, version))
            except IntegrityError:
                continue
            return True
    return False


def test_backup_from_before_an_erasure_is_unreadable_after_the_epoch_is_retired(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "before-erasure.dump"
    with running_server(private_vault, url) as server, server.client() as http:
        keys = {
            "app": bearer(create_key(http, tenant, ["ingest", "read"])["secret"]),
            "privacy": bearer(create_key(http, tenant, ["erasure"])["secret"]),
        }
        for ref in ("victim", "survivor"):
            http.post(f"/v1/subjects/{ref}/artefacts?category=recording", content=b"call",
                      headers=keys["app"])  # fmt: skip
            http.put(f"/v1/subjects/{ref}/records/p?category=account", json={"x": ref},
                     headers=keys["app"])  # fmt: skip
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        _erase(server, http, keys, "victim")

    async def new_epoch_and_retire() -> None:
        async with operator_context(private_vault, url) as ctx:
            await start_new_epoch(ctx.db, ctx.keyring, ctx.root)
            ended = next(e for e in await list_epochs(ctx.db) if e.epoch == 1).ended_at
            assert ended is not None
            retention = private_vault.backup_retention_days
            await retire_epoch(ctx.db, ctx.root, 1, retention, now=ended + timedelta(retention))

    asyncio.run(new_epoch_and_retire())

    copy_name = f"copy_{uuid.uuid4().hex[:8]}"
    asyncio.run(_rows(pg_admin_url, f'CREATE DATABASE "{copy_name}"'))
    restored = with_database(pg_admin_url, copy_name)
    _pg("pg_restore", "-d", restored, str(dump))

    erased_subjects = [
        r["subject_id"] for r in asyncio.run(_rows(url, "SELECT subject_id FROM erasures"))
    ]
    key_query = "SELECT * FROM subject_keys WHERE wrapped_key IS NOT NULL AND subject_id = ANY($1)"
    in_copy = asyncio.run(_rows(restored, key_query, erased_subjects))
    assert len(in_copy) >= 3  # recording, account, identity: the copy holds them all
    assert asyncio.run(_rows(url, key_query, erased_subjects)) == []  # the vault does not

    async def attempt() -> None:
        async with operator_context(private_vault, url) as ctx:
            kek_query = "SELECT tenant_id, version, wrapped_key FROM tenant_keks"
            copy_keks, copy_lost = _keks(ctx.root, await _rows(restored, kek_query))
            live_keks, _ = _keks(ctx.root, await _rows(url, kek_query))
            # The copy's KEK was wrapped under epoch 1, whose root key is gone.
            assert copy_keks == [] and copy_lost == 1
            assert [v for v, _ in live_keks] == [2]
            for row in in_copy:
                assert not _opens(copy_keks + live_keks, row)
            # Control: the method does open what is live (the survivor's keys).
            survivors = await _rows(
                url,
                "SELECT * FROM subject_keys WHERE wrapped_key IS NOT NULL"
                " AND NOT (subject_id = ANY($1))",
                erased_subjects,
            )
            assert survivors and all(_opens(live_keks, row) for row in survivors)

    asyncio.run(attempt())
