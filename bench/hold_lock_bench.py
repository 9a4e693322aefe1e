"""What a hold's share lock on its key rows (migration 0039) costs many concurrent reads of
one subject, against the same holds without it (the functions as before 0039).

Red team 9. Both variants run in one run on one vault and database: "before" replaces
dv_transfer_hold and dv_transfer_hold_keys with migration 0039's text minus its
`FOR SHARE OF d, s` (which is what they were: migrations 0026 and 0038), "after" puts
0039 back. Two measures per variant, each for DURATION seconds:

- sql: CONNECTIONS connections calling dv_transfer_hold on one data key in a loop (each
  call its own transaction, synchronous_commit off as a seek's hold): the database's
  side alone;
- http: CLIENTS concurrent clients reading 64 KiB ranges of one artefact (a video seek)
  through the vault, which runs in this process.

Printed per variant: calls per second, p50/p99 latency, WAL bytes per call, MultiXact
ids consumed per call (pg_control_checkpoint after a CHECKPOINT), deadlocks.

    .venv/bin/python bench/hold_lock_bench.py [--duration 10] [--connections 16] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tests.api.helpers import artefact_url, auth, create_key, uploaded
from tests.support import ServerThread, make_tenant, private_server, stop_embedded_postgres
from vault.db.embedded import embedded_postgres_url

MIGRATION = Path(__file__).parent.parent / "vault/db/migrations/0039_holds_lock_their_keys.sql"
RANGE = 64 * 1024


def _functions(locked: bool) -> str:
    text = MIGRATION.read_text()
    return text if locked else re.sub(r"\s*FOR SHARE OF d, s", "", text)


async def _counters(admin: asyncpg.Connection) -> tuple[int, int, int]:
    """WAL position, next MultiXact id (as of a checkpoint made now), deadlocks."""
    await admin.execute("CHECKPOINT")
    wal = await admin.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    mxid = await admin.fetchval(
        "SELECT next_multixact_id::text::bigint FROM pg_control_checkpoint()"
    )
    deadlocks = await admin.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(wal), int(mxid), int(deadlocks)


async def _sql(url: str, tenant: uuid.UUID, data_key: uuid.UUID, args: Any) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + args.duration

    async def caller() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SET synchronous_commit = off")
            while time.monotonic() < stop:
                began = time.perf_counter()
                held = await conn.fetchval(
                    "SELECT dv_transfer_hold($1, $2, $3, 60)", tenant, uuid.uuid4(), data_key
                )
                latencies.append(time.perf_counter() - began)
                assert held
        finally:
            await conn.close()

    await asyncio.gather(*(caller() for _ in range(args.connections)))
    return latencies


def _http(vault: ServerThread, path: str, key: dict[str, Any], size: int, args: Any) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + args.duration
    errors: list[str] = []

    def client(n: int) -> None:
        with vault.client() as http:
            offset = (n * RANGE) % (size - RANGE)
            while time.monotonic() < stop:
                began = time.perf_counter()
                answer = http.get(
                    path,
                    headers={**auth(key), "Range": f"bytes={offset}-{offset + RANGE - 1}"},
                )
                latencies.append(time.perf_counter() - began)
                if answer.status_code != 206:
                    errors.append(str(answer.status_code))
                offset = (offset + 7 * RANGE) % (size - RANGE)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"reads failed: {sorted(set(errors))} ({len(errors)})")
    return latencies


def _report(name: str, latencies: list[float], before: tuple[int, ...], after: tuple[int, ...],
            duration: float) -> None:  # fmt: skip
    calls = len(latencies)
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<14} {calls / duration:9.0f}/s  p50 {cuts[49] * 1000:7.2f} ms"
        f"  p99 {cuts[98] * 1000:7.2f} ms  WAL {(after[0] - before[0]) / calls:7.0f} B/call"
        f"  multixacts {(after[1] - before[1]) / calls:5.2f}/call"
        f"  deadlocks {after[2] - before[2]}"
    )


async def _round(
    vault: ServerThread, tenant: uuid.UUID, item: uuid.UUID, key: dict[str, Any], size: int,
    locked: bool, args: Any,
) -> None:  # fmt: skip
    label = "after (0039)" if locked else "before"
    admin = await asyncpg.connect(vault.database_url)
    try:
        data_key = await admin.fetchval("SELECT data_key_id FROM artefacts WHERE id = $1", item)
        await admin.execute(_functions(locked))
        await admin.execute("DELETE FROM transfer_keys")
        before = await _counters(admin)
        latencies = await _sql(vault.database_url, tenant, data_key, args)
        after = await _counters(admin)
        _report(f"sql {label}", latencies, before, after, args.duration)
        await admin.execute("DELETE FROM transfer_keys")
        again = await _counters(admin)
        path = artefact_url("seeker", str(item), "content")
        reads = await asyncio.to_thread(_http, vault, path, key, size, args)
        done = await _counters(admin)
        _report(f"http {label}", reads, again, done, args.duration)
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    pg_dir = Path(tempfile.mkdtemp(prefix="datavault-bench-pg-"))
    data_dir = Path(tempfile.mkdtemp(prefix="datavault-bench-data-"))
    try:
        admin_url = os.environ.get("DATABASE_URL") or embedded_postgres_url(pg_dir)
        with private_server(admin_url, data_dir) as vault:
            tenant = make_tenant(vault.settings, vault.database_url)
            size = 8 * 1024 * 1024
            with vault.client() as http:
                key = create_key(http, tenant, ["ingest", "read"])
                item = uploaded(http, key, "seeker", os.urandom(size))["id"]

            for locked in (False, True, False, True):
                asyncio.run(_round(vault, tenant.id, uuid.UUID(item), key, size, locked, args))
    finally:
        stop_embedded_postgres(pg_dir)
        shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
