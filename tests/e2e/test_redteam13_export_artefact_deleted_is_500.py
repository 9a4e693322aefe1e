"""Red team 13: an artefact deleted while an export is about to stream it is logged as the
vault's failure (500, error), not as the cut it is.

442ba6b narrowed `_refusal_after_head` (vault/http/transfers.py) to NotFound, Forbidden
and Unauthenticated: "anything else (the database unreachable, a bug) stays the
vault's failure". An artefact deletion is neither: it shreds the data key, then removes
the blob at once (`ArtefactService.delete` -> `remove_blob`). An export that claimed the
artefact's key (`TransferLease.claim`, in `open_content`) just before the delete opens
the blob just after it, and the blob store raises BlobNotFound, which is no VaultError:
the export is answered as a 500 and logged at error level. The docs (deletion-guarantee
"Downloads in flight") name exactly this case, "an export's next entry ... whose
artefact was deleted since its manifest", as a cut logged with that refusal's status
(404/410), not the vault's failure.

Window widened on purpose: the delete is sent (from a thread, served by the same
vault) right after the export's claim of the artefact's key commits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import artefact_url, auth, create_key, put_record, uploaded
from tests.e2e.stalled_clients import export_until_dropped, vault_output_until
from tests.support import ServerThread, make_tenant, module_private_server
from vault.blobs.filesystem import FilesystemBlobStore


async def _blob_key(database_url: str, artefact_id: str) -> str:
    admin = await asyncpg.connect(database_url)
    try:
        found = await admin.fetchval(
            "SELECT blob_key FROM artefacts WHERE id = $1", uuid.UUID(artefact_id)
        )
    finally:
        await admin.close()
    assert isinstance(found, str)
    return found


vault = module_private_server("rt13-deleted")


def test_an_artefact_deleted_under_an_export_is_a_cut_not_the_vaults_failure(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "rt13-deleted"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        privacy = create_key(http, tenant, ["read"])
        assert put_record(http, ingest, ref, "a-account", b'{"plan": "pro"}').status_code == 201
        artefact = uploaded(http, ingest, ref, b"invoice pdf" * 100)

    blob_key = asyncio.run(_blob_key(vault.database_url, artefact["id"]))
    deleted: list[int] = []
    raised: list[str] = []  # what the blob store raised to the export

    def delete_artefact() -> int:
        with httpx.Client(base_url=vault.base_url, timeout=10) as client:
            return client.delete(
                artefact_url(ref, artefact["id"]), headers=auth(ingest)
            ).status_code

    def deleted_before_read(name: str) -> None:
        real = getattr(FilesystemBlobStore, name)

        async def read(self: Any, key: str, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
            if key == blob_key and not deleted:
                deleted.append(await asyncio.to_thread(delete_artefact))
            try:
                async for piece in real(self, key, *args, **kwargs):
                    yield piece
            except Exception as exc:
                raised.append(type(exc).__name__)
                raise

        monkeypatch.setattr(FilesystemBlobStore, name, read)

    deleted_before_read("get_range")
    deleted_before_read("get_range_mapped")
    capsys.readouterr()
    export_until_dropped(vault, ref, privacy["secret"])  # the export did not finish
    assert deleted == [204], deleted
    assert raised == ["BlobNotFound"], raised
    logged = vault_output_until(capsys, "route=/v1/subjects/{ref}/export")
    export_lines = [line for line in logged.splitlines() if "/export" in line]
    assert export_lines, logged
    # The artefact's deletion cut the export (404/410), as the docs say; not a 500.
    assert not any("status=500" in line for line in export_lines), export_lines
    assert "transfer_cut" in logged, logged


def test_a_download_whose_artefact_is_deleted_before_its_blob_opens_is_gone(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same window before the answer's head: the download found the artefact and held
    its key (one statement), the delete lands, the blob is opened. The client asked for
    something that was just deleted: 404/410, not the vault's failure (never a 5xx for what a
    caller's own race causes). Found: 503, the blob store's failure ("try again"), for an
    artefact that is gone for good."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "rt13-download-deleted"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        reader = create_key(http, tenant, ["read"])
        artefact = uploaded(http, ingest, ref, b"invoice pdf" * 100)
        blob_key = asyncio.run(_blob_key(vault.database_url, artefact["id"]))
        deleted: list[int] = []

        def delete_artefact() -> int:
            with httpx.Client(base_url=vault.base_url, timeout=10) as client:
                url = artefact_url(ref, artefact["id"])
                return client.delete(url, headers=auth(ingest)).status_code

        for name in ("get_range", "get_range_mapped"):
            real = getattr(FilesystemBlobStore, name)

            async def read(
                self: Any, key: str, *args: Any, _real: Any = real, **kwargs: Any
            ) -> AsyncIterator[bytes]:
                if key == blob_key and not deleted:
                    deleted.append(await asyncio.to_thread(delete_artefact))
                async for piece in _real(self, key, *args, **kwargs):
                    yield piece

            monkeypatch.setattr(FilesystemBlobStore, name, read)
        answer = http.get(artefact_url(ref, artefact["id"], "content"), headers=auth(reader))
        assert deleted == [204], deleted
        assert answer.status_code in (404, 410), answer.status_code
