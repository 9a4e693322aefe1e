"""No unlogged access: while the access log cannot be written (and everything else can),
requests answer 503 and nothing is served; once it can, they succeed and are logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.api.helpers import create_key
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
