"""The vault with DATAVAULT_S3_* set: artefacts live in a real S3 store (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from crypto._stream_layout import STREAM_V3
from tests.api.helpers import download
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

BUCKET = f"dv-on-s3-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def s3_vault(settings: Settings, pg_admin_url: str, seaweed_s3: SeaweedS3) -> Settings:
    # A bucket of its own: another S3 vault's shred ledger in the shared bucket, signed
    # under that vault's keys, would stop this one from starting (seen in a suite run).
    bucket = seaweed_s3.new_bucket(BUCKET)
    return seaweed_s3.vault_settings(settings, new_database(pg_admin_url), bucket)


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
    listing = seaweed_s3.client().list_objects_v2(Bucket=BUCKET, Prefix="tenants/")
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
        body = seaweed_s3.client().get_object(Bucket=BUCKET, Key=stored[0])["Body"]
        with body:
            ciphertext = body.read()
        assert data[:4096] not in ciphertext and len(ciphertext) > len(data)
        # Written as this release's stream format, multipart and in one put alike.
        small = http.post(f"{base}?category=recording", content=b"x" * 1000, headers=key)
        assert small.status_code == 201, small.text
        [small_key] = _objects(seaweed_s3, small.json()["id"])
        with seaweed_s3.client().get_object(Bucket=BUCKET, Key=small_key)["Body"] as small_body:
            assert small_body.read(1) == bytes([STREAM_V3])
        assert http.delete(f"{base}/{small.json()['id']}", headers=key).status_code == 204
        assert ciphertext[0] == STREAM_V3

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


def _flip_stored(seaweed_s3: SeaweedS3, artefact_id: str, offset_fraction: float) -> None:
    """Replace the artefact's object with a copy that has one bit flipped."""
    (name,) = _objects(seaweed_s3, artefact_id)
    client = seaweed_s3.client()
    with client.get_object(Bucket=BUCKET, Key=name)["Body"] as body:
        raw = bytearray(body.read())
    raw[int(len(raw) * offset_fraction)] ^= 0x01
    client.put_object(Bucket=BUCKET, Key=name, Body=bytes(raw))


# A range over four segments: read and opened on the S3 read's own thread.
LONG_RANGE = (MIB + 10, 4 * MIB + 20)


@pytest.mark.parametrize("where", [0.5, 0.999], ids=["middle-segment", "last-segment"])
def test_a_flipped_byte_cuts_a_long_download_from_s3(
    s3_server: ServerThread, s3_vault: Settings, seaweed_s3: SeaweedS3, where: float
) -> None:
    tenant = make_tenant(s3_vault, s3_vault.database_url or "")
    key = bearer(_keys(s3_server, tenant))
    data = os.urandom(6 * MIB + 77)
    base = "/v1/subjects/caller-8/artefacts"
    first, last = LONG_RANGE
    ranged = {**key, "Range": f"bytes={first}-{last}"}
    with s3_server.client() as http:
        created = http.post(f"{base}?category=recording", content=data, headers=key)
        assert created.status_code == 201, created.text
        artefact_id = created.json()["id"]
        content = f"{base}/{artefact_id}/content"
        # Untouched: the whole and a range cut out of its first and last segments.
        whole = download(http, content, key)
        assert whole.status == 200 and whole.body == data
        part = download(http, content, ranged)
        assert part.status == 206 and part.body == data[first : last + 1]

        _flip_stored(seaweed_s3, artefact_id, where)
        whole = download(http, content, key)
        part = download(http, content, ranged)
        assert http.get("/healthz").status_code == 200
    # The status line went out before the flipped segment was read: the body is cut.
    assert whole.body is None and whole.error, (whole.status, whole.error)
    if where == 0.5:
        assert part.body is None and part.error, (part.status, part.error)
    else:  # the range ends before the last segment
        assert part.status == 206 and part.body == data[first : last + 1]
