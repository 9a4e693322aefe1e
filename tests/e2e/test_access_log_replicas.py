"""Two `datavault api` replicas logging the same tenant at once (issue: operations, item
1; DESIGN.md "Access log").

The database chains each batch onto whatever head it finds under the head's row lock
(migration 0015), so the two take turns at one chain. Every answered request must have
its row, in one unbroken chain that `datavault audit verify` accepts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx

from tests.api.helpers import auth, data_keys, put_record, record_url
from tests.support import make_tenant, vault_process
from vault.config import Settings

REQUESTS_PER_WORKER = 30
WORKERS = 8


def _api(settings: Settings, log: Path, stack: ExitStack) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
    }
    return stack.enter_context(vault_process(["api", "--host", "127.0.0.1"], env, log)).url


def test_two_replicas_logging_one_tenant_keep_every_row_in_one_chain(
    private_vault: Settings, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with ExitStack() as stack:
        replicas = [_api(private_vault, tmp_path / f"api-{n}.log", stack) for n in (1, 2)]
        with httpx.Client(base_url=replicas[0], timeout=30) as http:
            keys = data_keys(http, tenant)

        def work(worker: int) -> list[str]:
            ids = []
            clients = [httpx.Client(base_url=r, timeout=30) for r in replicas]
            try:
                for n in range(REQUESTS_PER_WORKER):
                    http = clients[(worker + n) % 2]
                    ref = f"user-{worker}-{n % 3}"
                    if n % 2:
                        answer = http.get(record_url(ref, "profile"), headers=auth(keys.read))
                        assert answer.status_code in (200, 404), answer.text
                    else:
                        answer = put_record(http, keys.ingest, ref, "profile", b'{"n": 1}')
                        assert answer.status_code in (200, 201), answer.text
                    ids.append(answer.headers["x-request-id"])
            finally:
                for client in clients:
                    client.close()
            return ids

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            answered = [i for ids in pool.map(work, range(WORKERS)) for i in ids]

    async def logged() -> tuple[list[int], set[str]]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT seq, request_id FROM access_log WHERE tenant_id = $1 ORDER BY seq",
                tenant.id,
            )
        finally:
            await conn.close()
        return [r["seq"] for r in rows], {r["request_id"] for r in rows}

    seqs, request_ids = asyncio.run(logged())
    assert len(answered) == WORKERS * REQUESTS_PER_WORKER
    assert set(answered) <= request_ids
    assert seqs == list(range(1, len(seqs) + 1))
    env = {**os.environ, "DATABASE_URL": url, "DATAVAULT_DATA_DIR": str(private_vault.data_dir)}
    verified = subprocess.run(
        [sys.executable, "-m", "vault", "audit", "verify", "--tenant", tenant.slug],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
