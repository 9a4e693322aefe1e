"""Workers killed with SIGKILL at random points during a batch of erasures, two and three
of them sharing the queue: every erasure still ends completed, none is done twice, no key
of an erased generation survives (`check deletion` is clean), and at no point is an
erasure in progress or completed while a key of its generation is still there."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.api.helpers import create_key
from tests.support import (
    bearer,
    free_port,
    make_tenant,
    new_database,
    running_server,
    vault_process,
)
from vault.config import Settings
from workers.deletion_check import find_deletion_violations

SUBJECTS = 60
KILLS = 4


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "vault", "worker", "--port", str(free_port())],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def _state(conn: asyncpg.Connection) -> tuple[dict[str, int], int]:
    """(erasures by status, completed-or-in-progress erasures with a live key left), as
    the database's owner (it sees every tenant); each statement its own snapshot."""
    statuses = {
        r["status"]: r["n"]
        for r in await conn.fetch("SELECT status, count(*) AS n FROM erasures GROUP BY status")
    }
    violations = await conn.fetchval(
        """SELECT count(*) FROM erasures e JOIN subject_keys k
             ON k.tenant_id = e.tenant_id AND k.subject_id = e.subject_id
            AND k.generation BETWEEN e.from_generation AND e.generation
          WHERE e.status IN ('in_progress', 'completed') AND k.wrapped_key IS NOT NULL"""
    )
    return statuses, int(violations)


@contextmanager
def _watching(url: str) -> Iterator[Callable[[], tuple[dict[str, int], int]]]:
    """`_state` as often as a test asks, on one connection held for the test: the tests
    ask every few hundredths of a second while workers run, and a connection each time
    was a new PostgreSQL backend each time (thousands a run, for the same two queries)."""
    with asyncio.Runner() as runner:
        conn = runner.run(asyncpg.connect(url))
        try:
            yield lambda: runner.run(_state(conn))
        finally:
            runner.run(conn.close())


def _queued_erasures(pg_admin_url: str, tmp_path: Path) -> tuple[Settings, str]:
    """A private vault with SUBJECTS subjects' data and an erasure for each, not started."""
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)
    # The API alone (no jobs) takes the data and the instructions.
    with running_server(settings, url, run_jobs=False) as api, api.client() as http:
        app = bearer(create_key(http, tenant, ["ingest"])["secret"])
        privacy = bearer(create_key(http, tenant, ["erasure"])["secret"])
        for n in range(SUBJECTS):
            http.post(f"/v1/subjects/s{n}/artefacts?category=recording", content=b"x" * 100,
                      headers=app)  # fmt: skip
            for category in ("account", "support"):
                http.put(f"/v1/subjects/s{n}/records/r?category={category}", json=n,
                         headers=app)  # fmt: skip
        for n in range(SUBJECTS):
            assert http.post(f"/v1/subjects/s{n}/erasure", headers=privacy).status_code == 202
    return settings, url


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_sharing_the_queue_one_killed_at_random_points(
    pg_admin_url: str, tmp_path: Path, workers: int
) -> None:
    """`workers` workers shred one queue; each time the batch moves on, one of them (at
    random) is killed with SIGKILL and replaced. No erasure is lost or done twice, and no
    erasure is ever in progress or completed while a key it shredded is still live."""
    settings, url = _queued_erasures(pg_admin_url, tmp_path)
    log = tmp_path / "workers.log"
    rng = random.Random(workers)
    running = [_worker(settings, log) for _ in range(workers)]
    kills, seen_done = 0, 0
    try:
        with _watching(url) as state:
            deadline = time.monotonic() + 120
            while True:
                statuses, violations = state()
                assert violations == 0, statuses
                done = SUBJECTS - statuses.get("scheduled", 0)
                if statuses.get("completed") == SUBJECTS or time.monotonic() > deadline:
                    break
                if kills < KILLS and done > seen_done:  # mid-batch: kill one, start another
                    seen_done = done
                    victim = running.pop(rng.randrange(len(running)))
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(timeout=30)
                    running.append(_worker(settings, log))
                    kills += 1
                time.sleep(0.02)
    finally:
        for worker in running:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
    assert statuses == {"completed": SUBJECTS}, (statuses, log.read_text()[-3000:])
    assert kills >= 1, "no worker was killed while the batch ran"
    twice = asyncio.run(_done_twice(url))
    assert twice == [], twice
    assert asyncio.run(find_deletion_violations(url, grace=timedelta(0))) == []


async def _done_twice(url: str) -> list[str]:
    """Erasures shredded or completed more than once, and keys destroyed more than once
    in the shred ledger's outbox."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT 'erasure ' || erasure_id || ' ' || to_status AS what FROM erasure_events
                WHERE to_status IN ('in_progress', 'completed')
                GROUP BY erasure_id, to_status HAVING count(*) > 1
               UNION ALL
               SELECT 'key ' || key_id FROM ledger_outbox
                GROUP BY key_kind, key_id HAVING count(*) > 1"""
        )
        return [r["what"] for r in rows]
    finally:
        await conn.close()


def test_sigterm_mid_batch_stops_the_worker_cleanly_and_another_finishes(
    pg_admin_url: str, tmp_path: Path
) -> None:
    settings, url = _queued_erasures(pg_admin_url, tmp_path)
    log = tmp_path / "worker.log"
    with _watching(url) as state:
        worker = _worker(settings, log)
        deadline = time.monotonic() + 60
        while not state()[0].get("completed"):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)  # while the rest of the batch is being shredded
        assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert "Application shutdown complete" in log.read_text()
        statuses, violations = state()
        assert violations == 0
        # Nothing is stuck claimed by the stopped worker: the next one finishes the batch.
        worker = _worker(settings, log)
        try:
            deadline = time.monotonic() + 60
            while statuses != {"completed": SUBJECTS} and time.monotonic() < deadline:
                time.sleep(0.05)
                statuses, violations = state()
                assert violations == 0
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    assert statuses == {"completed": SUBJECTS}, log.read_text()[-3000:]


def test_worker_serves_probes_and_metrics_but_no_data_routes(
    pg_admin_url: str, tmp_path: Path
) -> None:
    url = new_database(pg_admin_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
    tenant = make_tenant(settings, url)
    log = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": url, "DATAVAULT_DATA_DIR": str(settings.data_dir)}
    with vault_process(["worker"], env, log, probe="/readyz") as worker:
        ready = httpx.get(f"{worker.url}/readyz")
        assert ready.json()["checks"] == {"database": True, "blob_store": True}
        assert "datavault_http_requests_total" in httpx.get(f"{worker.url}/metrics").text
        # A worker holds no API: a valid key gets nothing from it.
        assert httpx.get(f"{worker.url}/v1/api-keys", headers=tenant.auth()).status_code == 404
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=60) == 0
    assert "Application shutdown complete" in log.read_text()
