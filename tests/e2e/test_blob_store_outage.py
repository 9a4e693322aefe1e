"""The S3 store goes away under the vault: uploads answer 503 with Retry-After (not 500),
no artefact row is left without its blob, and reads of stored data fail the same way."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from tests.api.helpers import create_key
from tests.seaweed import running_seaweed
from tests.support import bearer, make_tenant, new_database, running_server
from vault.config import Settings


@pytest.mark.slow
def test_uploads_answer_503_while_the_blob_store_is_down(pg_admin_url: str, tmp_path: Path) -> None:
    url = new_database(pg_admin_url)
    (tmp_path / "weed").mkdir()
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(running_seaweed(tmp_path / "weed"))
        settings = Settings(
            data_dir=tmp_path / "data", database_url=url, s3_bucket=s3.bucket,
            s3_endpoint_url=s3.endpoint_url, s3_region="us-east-1",
        )  # fmt: skip
        tenant = make_tenant(settings, url)
        with running_server(settings, url) as server, server.client() as http:
            app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
            base = "/v1/subjects/u/artefacts"
            stored = http.post(f"{base}?category=recording", content=b"before", headers=app)
            assert stored.status_code == 201
            stack.close()  # SeaweedFS stops; the vault keeps running
            started = time.monotonic()
            upload = http.post(
                f"{base}?category=recording", content=os.urandom(50_000), headers=app
            )
            read = http.get(f"{base}/{stored.json()['id']}/content", headers=app)
            elapsed = time.monotonic() - started
            ready = http.get("/readyz")
            listed = http.get(base, headers=app).json()["items"]
    for response in (upload, read):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
    assert elapsed < 30
    assert ready.status_code == 503 and ready.json()["checks"]["blob_store"] is False
    # The failed upload left nothing visible; the earlier artefact is still listed.
    assert [a["id"] for a in listed] == [stored.json()["id"]]
