"""A transfer's lease (vault/services/transfers.py): what the clock confirms while a
download, export or upload runs. It fails once a data key it holds is destroyed or the
API key that started it is revoked, expired or its tenant closed; an upload's completion
checks the API key in its own statement; closing the lease closes the decrypting stream
and the data key leaves memory with it. The cut by the clock over HTTP is shown in
tests/e2e/test_transfer_cut.py."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.support import Tenant, data_keys_in_memory
from vault.config import Settings
from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef, normalize_ref
from vault.errors import KeyDestroyed, KeyNoLongerLive
from vault.runtime import OperatorContext, operator_context
from vault.services.artefacts import ArtefactService
from vault.services.subject_refs import SubjectRefHasher
from vault.services.subjects import SubjectAccess, SubjectService
from vault.services.transfers import TransferLease

MIB = 1024 * 1024
ACCESS = SubjectAccess(may_read_restricted=False)


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MIB):
        yield data[start : start + MIB]


def _service(ctx: OperatorContext) -> ArtefactService:
    subjects = SubjectService(ctx.keyring, SubjectRefHasher(ctx.db, ctx.root))
    return ArtefactService(ctx.db, ctx.blobs, ctx.keyring, subjects, 1 << 30)


async def _lease(ctx: OperatorContext, tenant: Tenant) -> TransferLease:
    """A lease under a fresh read-and-ingest key of the tenant's."""
    key = await ctx.api_keys.create(
        tenant.id, name="transfer", scopes=frozenset({Scope.READ, Scope.INGEST})
    )
    return TransferLease(ctx.db, tenant.id, key.id)


def _run(
    settings: Settings,
    database_url: str,
    test: Callable[[OperatorContext, ArtefactService, TransferLease], Awaitable[None]],
    tenant: Tenant,
) -> None:
    async def run() -> None:
        async with operator_context(settings, database_url) as ctx:
            await test(ctx, _service(ctx), await _lease(ctx, tenant))

    asyncio.run(run())


async def _stored(
    service: ArtefactService, tenant: Tenant, lease: TransferLease, ref: SubjectRef
) -> uuid.UUID:
    data = os.urandom(3 * MIB)
    artefact = await service.upload(
        tenant.id, ref, category="recording", content_type="audio/wav", filename=None,
        body=_body(data), declared_length=len(data), lease=lease,
    )  # fmt: skip
    return artefact.id


def test_lease_of_a_download_fails_once_its_data_key_is_destroyed(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def test(ctx: OperatorContext, service: ArtefactService, lease: TransferLease) -> None:
        ref = normalize_ref("streaming-listener")
        artefact_id = await _stored(
            service, tenant, TransferLease(ctx.db, tenant.id, lease.api_key_id), ref
        )
        located = await service.locate(tenant.id, None, ref, artefact_id, ACCESS)
        content = await service.open_content(located, None, lease)
        await anext(content.body)
        await lease.confirm()  # live: nothing to cut
        # Meanwhile the tenant deletes it (an erasure does the same to the subject key).
        await service.delete(tenant.id, ref, artefact_id)
        with pytest.raises(KeyDestroyed):
            await lease.confirm()
        await lease.close()

    _run(settings, database_url, test, tenant)


def test_lease_fails_once_its_api_key_is_revoked_or_expired(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def test(ctx: OperatorContext, service: ArtefactService, lease: TransferLease) -> None:
        await lease.confirm()
        await ctx.api_keys.revoke(tenant.id, lease.api_key_id)
        with pytest.raises(KeyNoLongerLive):
            await lease.confirm()
        expiring = await _lease(ctx, tenant)
        await expiring.confirm()
        async with ctx.db.tenant_tx(tenant.id) as conn:
            await conn.execute(
                "UPDATE api_keys SET expires_at = now() - interval '1 second'"
                " WHERE tenant_id = $1 AND id = $2",
                tenant.id,
                expiring.api_key_id,
            )
        with pytest.raises(KeyNoLongerLive):
            await expiring.confirm()

    _run(settings, database_url, test, tenant)


def test_closing_the_lease_closes_the_stream_and_the_key_leaves_memory(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def test(ctx: OperatorContext, service: ArtefactService, lease: TransferLease) -> None:
        ref = normalize_ref("closing-listener")
        artefact_id = await _stored(
            service, tenant, TransferLease(ctx.db, tenant.id, lease.api_key_id), ref
        )
        located = await service.locate(tenant.id, None, ref, artefact_id, ACCESS)
        content = await service.open_content(located, None, lease)
        await anext(content.body)
        assert len(data_keys_in_memory(tenant)) == 1  # held by the open stream
        await lease.close()
        assert data_keys_in_memory(tenant) == []
        with pytest.raises(StopAsyncIteration):
            await anext(content.body)

    _run(settings, database_url, test, tenant)


def test_upload_by_a_key_revoked_while_its_body_streams_never_completes(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    async def test(ctx: OperatorContext, service: ArtefactService, lease: TransferLease) -> None:
        async def revoked_half_way() -> AsyncIterator[bytes]:
            yield os.urandom(MIB)
            await ctx.api_keys.revoke(tenant.id, lease.api_key_id)
            yield os.urandom(MIB)

        with pytest.raises(KeyNoLongerLive):
            await service.upload(
                tenant.id, normalize_ref("revoked-uploader"), category="recording",
                content_type="audio/wav", filename=None, body=revoked_half_way(),
                declared_length=None, lease=lease,
            )  # fmt: skip
        async with ctx.db.tenant_tx(tenant.id) as conn:
            rows = await conn.fetch(
                "SELECT a.state, d.wrapped_key IS NULL AS destroyed FROM artefacts a"
                " JOIN data_keys d ON d.tenant_id = a.tenant_id AND d.id = a.data_key_id"
                " WHERE a.tenant_id = $1",
                tenant.id,
            )
        assert [(r["state"], r["destroyed"]) for r in rows] == [("deleted", True)]

    _run(settings, database_url, test, tenant)
