"""No unlogged access: while the access log cannot be written (and everything else can),
requests answer 503 and nothing is served; once it can, they succeed and are logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.api.helpers import create_key, uploaded
from tests.support import bearer, make_tenant, new_database, problem, running_server
from vault.config import Settings


def _as_owner(url: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_request_that_cannot_be_logged_is_refused_with_503(
    pg_admin_url: str, tmp_path: Path
) -> None:
    url = new_database(pg_admin_url)  # the grant is taken away: its own database
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)
    with running_server(settings, url) as server, server.client() as http:
        app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
        assert http.put("/v1/subjects/u/records/r?category=account", json=1,
                        headers=app).status_code == 201  # fmt: skip
        _as_owner(url, "REVOKE INSERT ON access_log FROM datavault_app")
        try:
            read = http.get("/v1/subjects/u/records/r", headers=app)
            write = http.put("/v1/subjects/u/records/s?category=account", json=2, headers=app)
        finally:
            _as_owner(url, "GRANT INSERT ON access_log TO datavault_app")
        after = http.get("/v1/subjects/u/records/r", headers=app)
        # The write refused while the log was failing did not happen either.
        unwritten = http.get("/v1/subjects/u/records/s", headers=app)
        officer = bearer(create_key(http, tenant, ["compliance"])["secret"])
        logged = http.get("/v1/access-log?limit=500", headers=officer).json()["items"]
    assert problem(read)["status"] == 503
    assert problem(write)["status"] == 503
    assert after.status_code == 200 and after.json() == 1
    assert unwritten.status_code == 404
    request_ids = {item["request_id"] for item in logged}
    assert after.headers["x-request-id"] in request_ids
    assert read.headers["x-request-id"] not in request_ids


def test_a_range_read_or_small_download_that_cannot_be_logged_serves_no_byte(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """A seek's range and a small artefact go out as one message once their access-log
    row is committed: while it cannot be, 503 and not one byte of the artefact."""
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)
    data = bytes(range(256)) * 8192  # 2 MiB: two segments
    with running_server(settings, url) as server, server.client() as http:
        key = create_key(http, tenant, ["ingest", "read"])
        artefact = uploaded(http, key, "u", data)
        content = f"/v1/subjects/u/artefacts/{artefact['id']}/content"
        app = bearer(key["secret"])
        seek = {**app, "Range": f"bytes={1024 * 1024 - 1000}-{1024 * 1024 + 64 * 1024}"}
        small = uploaded(http, key, "u", b"small artefact")
        small_content = f"/v1/subjects/u/artefacts/{small['id']}/content"
        _as_owner(url, "REVOKE INSERT ON access_log FROM datavault_app")
        try:
            refused = [http.get(content, headers=seek), http.get(small_content, headers=app)]
        finally:
            _as_owner(url, "GRANT INSERT ON access_log TO datavault_app")
        served = [http.get(content, headers=seek), http.get(small_content, headers=app)]
    for response in refused:
        assert problem(response)["status"] == 503
        assert data[1024 * 1024 - 1000 : 1024 * 1024] not in response.content
        assert b"small artefact" not in response.content
    assert served[0].status_code == 206
    assert served[0].content == data[1024 * 1024 - 1000 : 1024 * 1024 + 64 * 1024 + 1]
    assert served[1].status_code == 200 and served[1].content == b"small artefact"
