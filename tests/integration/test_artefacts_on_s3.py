"""The vault with DATAVAULT_S3_* set: artefacts live in a real S3 store (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import pytest

from tests.seaweed import SeaweedS3
from tests.support import (
    ServerThread,
    Tenant,
    bearer,
    make_tenant,
    new_database,
    running_server,
)
from vault.config import Settings

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_vault(settings: Settings, pg_admin_url: str, seaweed_s3: SeaweedS3) -> Settings:
    return seaweed_s3.vault_settings(settings, new_database(pg_admin_url))


@pytest.fixture(scope="module")
def s3_server(s3_vault: Settings) -> Iterator[ServerThread]:
    with running_server(s3_vault, s3_vault.database_url or "") as server:
        yield server


def _keys(server: ServerThread, tenant: Tenant) -> str:
    with server.client() as http:
        created = http.post(
            "/v1/api-keys",
            json={"name": "app", "scopes": ["ingest", "read"]},
            headers=tenant.auth(),
        )
    assert created.status_code == 201, created.text
    return str(created.json()["secret"])


def _objects(seaweed_s3: SeaweedS3, needle: str) -> list[str]:
    listing = seaweed_s3.client().list_objects_v2(Bucket=seaweed_s3.bucket, Prefix="tenants/")
    return [o["Key"] for o in listing.get("Contents", []) if needle in o["Key"]]


def test_artefact_round_trip_range_and_shred_on_s3(
    s3_server: ServerThread, s3_vault: Settings, seaweed_s3: SeaweedS3
) -> None:
    tenant = make_tenant(s3_vault, s3_vault.database_url or "")
    key = bearer(_keys(s3_server, tenant))
    data = os.urandom(9 * MIB + 123)  # more than one 8 MiB multipart part
    base = "/v1/subjects/caller-7/artefacts"
    with s3_server.client() as http:
        created = http.post(f"{base}?category=recording", content=data, headers=key)
        assert created.status_code == 201, created.text
        artefact = created.json()
        assert artefact["sha256"] == hashlib.sha256(data).hexdigest()
        stored = _objects(seaweed_s3, artefact["id"])
        assert len(stored) == 1
        # Only ciphertext reaches the store.
        body = seaweed_s3.client().get_object(Bucket=seaweed_s3.bucket, Key=stored[0])["Body"]
        with body:
            ciphertext = body.read()
        assert data[:4096] not in ciphertext and len(ciphertext) > len(data)

        content = f"{base}/{artefact['id']}/content"
        whole = http.get(content, headers=key)
        assert whole.status_code == 200 and whole.content == data
        part = http.get(content, headers={**key, "Range": "bytes=8388600-8388700"})
        assert part.status_code == 206 and part.content == data[8388600:8388701]

        assert http.delete(f"{base}/{artefact['id']}", headers=key).status_code == 204
        assert http.get(content, headers=key).status_code == 410
    deadline = time.monotonic() + 10
    while _objects(seaweed_s3, artefact["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _objects(seaweed_s3, artefact["id"]) == []
