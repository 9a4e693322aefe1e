"""Red team 19: a root envelope (`D1`, FORMAT.md "Local key file") whose epoch field was
changed in the database. The epoch is not authenticated on its own: it picks the root
key, and a wrong one must fail like any other altered byte (the one IntegrityError, the
integrity problem, the integrity alert), not as a key service that is down."""

from __future__ import annotations

import asyncio
import struct
import uuid
from pathlib import Path

import asyncpg
import pytest

from crypto.context import PURPOSE_TENANT_KEK, KeyContext
from crypto.errors import IntegrityError
from crypto.providers.local import LocalKeyFileProvider
from crypto.secrets import generate_key
from tests.api.helpers import data_keys, put_record
from tests.support import ServerThread, make_tenant

CONTEXT = KeyContext(PURPOSE_TENANT_KEK, tenant_id="tenant-a", key_id="kek-1", version=1)


def _with_epoch(wrapped: bytes, epoch: int) -> bytes:
    return wrapped[:1] + struct.pack(">I", epoch) + wrapped[5:]


def test_an_envelope_with_another_issued_epoch_fails_as_integrity(tmp_path: Path) -> None:
    """Epoch 1 relabelled 2 (both live): the wrap does not open under epoch 2's key."""
    provider = LocalKeyFileProvider.open_or_create(tmp_path / "k.json")
    wrapped = provider.wrap(generate_key(), CONTEXT)
    provider.add_epoch()
    with pytest.raises(IntegrityError):
        provider.unwrap(_with_epoch(wrapped, 2), CONTEXT)


@pytest.mark.xfail(
    strict=True,
    reason="red team 19 finding 6: a root envelope whose epoch field names an epoch that "
    "was never issued raises KeyUnavailableError ('root key epoch N is destroyed or "
    "unknown'): 503 with Retry-After as if the key service were down, and a second error "
    "type for one altered byte (FORMAT.md: one error type, no oracle)",
)
@pytest.mark.parametrize("epoch", [0, 2, 2**24 + 1, 2**32 - 1])
def test_an_envelope_naming_a_never_issued_epoch_fails_as_integrity(
    tmp_path: Path, epoch: int
) -> None:
    provider = LocalKeyFileProvider.open_or_create(tmp_path / "k.json")
    wrapped = provider.wrap(generate_key(), CONTEXT)
    with pytest.raises(IntegrityError):
        provider.unwrap(_with_epoch(wrapped, epoch), CONTEXT)


@pytest.fixture(scope="module")
def server(quiet_vault: ServerThread) -> ServerThread:
    return quiet_vault


@pytest.mark.xfail(
    strict=True,
    reason="red team 19 finding 6: a tenant KEK row whose envelope epoch byte was flipped "
    "answers every write of the tenant 503 'the key service is unavailable' with "
    "Retry-After, not the integrity problem",
)
def test_a_kek_envelope_with_a_flipped_epoch_byte_is_an_integrity_problem(
    server: ServerThread,
) -> None:
    tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        keys = data_keys(http, tenant)

        async def flip() -> None:
            conn = await asyncpg.connect(server.database_url)  # the table owner
            try:
                wrapped = await conn.fetchval(
                    "SELECT wrapped_key FROM tenant_keks WHERE tenant_id = $1 AND version = 1",
                    tenant.id,
                )
                flipped = bytes(wrapped[:1]) + bytes([wrapped[1] ^ 0x01]) + bytes(wrapped[2:])
                await conn.execute(
                    "UPDATE tenant_keks SET wrapped_key = $2 WHERE tenant_id = $1 AND version = 1",
                    tenant.id,
                    flipped,
                )
            finally:
                await conn.close()

        asyncio.run(flip())
        ref = f"rt19-{uuid.uuid4().hex[:12]}"
        written = put_record(http, keys.ingest, ref, "email", b'"a@example.org"')
    assert written.status_code == 500, (written.status_code, written.text)
    assert written.json()["type"].endswith("integrity")
