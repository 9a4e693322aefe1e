"""A download already streaming when its key is shredded stops (DESIGN.md: within 60 s;
the vault re-checks the key every few seconds while it streams)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from tests.support import Tenant
from vault.config import Settings
from vault.domain.secret_text import SecretText
from vault.errors import KeyDestroyed
from vault.runtime import operator_context
from vault.services.artefacts import ArtefactService
from vault.services.subject_refs import SubjectRefHasher
from vault.services.subjects import SubjectAccess, SubjectService

MIB = 1024 * 1024


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MIB):
        yield data[start : start + MIB]


def test_streaming_download_is_cut_once_its_key_is_destroyed(
    settings: Settings, database_url: str, tenant: Tenant
) -> None:
    data = os.urandom(6 * MIB)
    access = SubjectAccess(may_read_restricted=False)

    async def run() -> list[bytes]:
        async with operator_context(settings, database_url) as ctx:
            subjects = SubjectService(ctx.keyring, SubjectRefHasher(ctx.db, ctx.root))
            service = ArtefactService(ctx.db, ctx.blobs, ctx.keyring, subjects, 1 << 30)
            service.key_recheck_seconds = 0.0  # re-check before every piece in this test
            ref = SecretText("streaming-listener")
            artefact = await service.upload(
                tenant.id, ref, category="recording", content_type="audio/wav", filename=None,
                body=_body(data), declared_length=len(data),
            )  # fmt: skip
            content = await service.open_content(tenant.id, ref, artefact.id, access, None)
            received = [await anext(content.body)]
            # Meanwhile the tenant deletes it (an erasure does the same to the subject key).
            await service.delete(tenant.id, ref, artefact.id)
            with pytest.raises(KeyDestroyed):
                async for piece in content.body:
                    received.append(piece)
            return received

    received = asyncio.run(run())
    assert 0 < sum(map(len, received)) < len(data)
