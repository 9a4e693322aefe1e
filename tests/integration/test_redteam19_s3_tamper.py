"""Red team 19: an artefact's object changed in the S3 store (SeaweedFS), read over HTTP.

As tests/api/test_redteam19_stored_blob_tamper.py for the filesystem store: every cut,
reorder, splice or header lie in the stored object gives exactly the right plaintext or
fails (cut stream or the integrity problem), for the whole object, a range before the
damage, a range spanning it and an export. The S3 store reads long ranges on a thread of
their own and answers a range past the object's end with InvalidRange, so its paths
differ from the filesystem's."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.api.helpers import artefact_url, download, subject_url
from tests.api.test_redteam19_stored_blob_tamper import (
    HOW,
    READS,
    SIZE,
    _exact_or_failed,
    _tampered,
)
from tests.seaweed import SeaweedS3
from tests.support import ServerThread, bearer, make_tenant, new_database, running_server
from vault.config import Settings

BUCKET = f"dv-rt19-{uuid.uuid4().hex[:12]}"


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


@pytest.fixture(scope="module")
def secret(s3_server: ServerThread, s3_vault: Settings) -> str:
    tenant = make_tenant(s3_vault, s3_vault.database_url or "")
    with s3_server.client() as http:
        created = http.post(
            "/v1/api-keys",
            json={"name": "app", "scopes": ["ingest", "read"]},
            headers=tenant.auth(),
        )
    assert created.status_code == 201, created.text
    return str(created.json()["secret"])


def _object_name(seaweed_s3: SeaweedS3, artefact_id: str) -> str:
    listing = seaweed_s3.client().list_objects_v2(Bucket=BUCKET, Prefix="tenants/")
    (name,) = [o["Key"] for o in listing.get("Contents", []) if artefact_id in o["Key"]]
    return str(name)


@pytest.mark.parametrize("how", HOW)
def test_an_object_changed_in_s3_reads_exactly_or_fails(
    s3_server: ServerThread, seaweed_s3: SeaweedS3, secret: str, how: str
) -> None:
    data, ref = os.urandom(SIZE), f"rt19-{uuid.uuid4().hex[:12]}"
    key = bearer(secret)
    with s3_server.client() as http:
        created = http.post(
            f"{subject_url(ref, 'artefacts')}?category=recording", content=data, headers=key
        )
        assert created.status_code == 201, created.text
        artefact_id = created.json()["id"]
        client, name = seaweed_s3.client(), _object_name(seaweed_s3, artefact_id)
        with client.get_object(Bucket=BUCKET, Key=name)["Body"] as body:
            raw = body.read()
        client.put_object(Bucket=BUCKET, Key=name, Body=_tampered(raw, how))
        url = artefact_url(ref, artefact_id, "content")
        outcomes = {}
        for header, part in READS:
            headers = key | ({"Range": header} if header else {})
            outcomes[header] = _exact_or_failed(
                download(http, url, headers), data[part], f"{how} {header}"
            )
        exported = download(http, subject_url(ref, "export"), key)
        assert http.get("/healthz").status_code == 200
    if how == "junk-appended":
        assert all(outcomes.values()), outcomes
    else:
        assert not outcomes[None], outcomes
    if how in ("cut-at-boundary", "cut-inside-last", "middle-dropped"):
        assert not outcomes["bytes=-100"], outcomes
    if how != "junk-appended":
        assert exported.body is None or exported.status >= 500, (how, exported.status)


@pytest.mark.parametrize("read", ["seek", "whole"])
def test_an_object_removed_from_s3_behind_a_live_artefact_is_reported_as_lost(
    s3_server: ServerThread, seaweed_s3: SeaweedS3, secret: str, read: str
) -> None:
    """Finding 5 for S3: the store answers NoSuchKey for a live artefact's object: the
    blob-missing problem (500, no Retry-After: no retry brings it back), counted under
    kind="blob_missing" for the integrity alert. (An unreachable store stays 503 with
    Retry-After: tests/integration/test_blob_stores.py, tests/e2e.)"""
    data, ref = os.urandom(SIZE), f"rt19-{uuid.uuid4().hex[:12]}"
    key = bearer(secret)
    series = 'datavault_integrity_failures_total{kind="blob_missing"} '

    def counted(text: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(series)]
        return float(lines[0].removeprefix(series)) if lines else 0.0

    with s3_server.client() as http:
        created = http.post(
            f"{subject_url(ref, 'artefacts')}?category=recording", content=data, headers=key
        )
        assert created.status_code == 201, created.text
        artefact_id = created.json()["id"]
        name = _object_name(seaweed_s3, artefact_id)
        seaweed_s3.client().delete_object(Bucket=BUCKET, Key=name)
        before = counted(http.get("/metrics").text)
        headers = key | ({"Range": "bytes=0-99"} if read == "seek" else {})
        result = download(http, artefact_url(ref, artefact_id, "content"), headers)
        after = counted(http.get("/metrics").text)
    assert result.status == 500 and result.body is not None, result
    assert "retry-after" not in result.headers
    assert result.body.startswith(b"{") and b"/blob-missing" in result.body
    assert after == before + 1
