"""Root-key epoch benchmark: how long `keys new-epoch` takes for N live subject keys.

    python bench/epoch_bench.py [--keys 100000] [--tenants 1]

Runs in-process against its own PostgreSQL (DATABASE_URL as a superuser URL: a new
database is created there; otherwise the embedded server in a temporary directory) with
a local root key file. The subject keys are made by the real code path (a fresh 256-bit
key per subject, wrapped under the tenant KEK with `wrap_key` and the canonical subject
key context) and loaded with COPY, so the setup is quick; then `start_new_epoch`
(what `datavault keys new-epoch` runs) is timed: a new root key, new KEK versions,
every subject key unwrapped and rewrapped in batches of 500, old KEK versions destroyed.

Measured on 2 shared cores (embedded PostgreSQL, local root key, one tenant): loading
100,000 keys 6.1 s; new-epoch 47.0 s (2,128 subject keys/s), dominated by one UPDATE
round trip per rewrapped key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import asyncpg

from crypto.keywrap import wrap_key
from crypto.secrets import generate_key
from vault.config import Settings
from vault.db.migrate import migrate
from vault.runtime import operator_context
from vault.services.keyring import SubjectKeyRef, subject_key_context
from vault.services.root_epochs import start_new_epoch
from vault.services.tenants import create_tenant


def database_url(workdir: Path) -> str:
    admin = os.environ.get("DATABASE_URL")
    if not admin:
        from vault.db.embedded import embedded_postgres_url

        return embedded_postgres_url(workdir / "pg")
    name = f"dv_epoch_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(admin)._replace(path=f"/{name}"))


async def load_subject_keys(settings: Settings, url: str, tenants: int, keys: int) -> float:
    """Create the tenants and their subject keys; returns the seconds it took."""
    started = time.perf_counter()
    async with operator_context(settings, url) as ctx:
        owner = await asyncpg.connect(url)  # COPY needs the owner (RLS forbids COPY FROM)
        try:
            for n in range(tenants):
                tenant = await create_tenant(ctx.db, ctx.root, ctx.api_keys, f"bench-{n}")
                async with ctx.db.tenant_tx(tenant.id) as conn:
                    kek = await ctx.keyring.kek(conn, tenant.id, 1)
                subjects, subject_keys = [], []
                for _ in range(keys // tenants):
                    subject_id = uuid.uuid4()
                    ref = SubjectKeyRef(tenant.id, uuid.uuid4(), subject_id, "recording", 1)
                    wrapped = wrap_key(kek, generate_key(), subject_key_context(ref, 1))
                    subjects.append((tenant.id, subject_id, os.urandom(32)))
                    subject_keys.append((tenant.id, ref.id, subject_id, "recording", 1, 1, wrapped))
                await owner.copy_records_to_table(
                    "subjects", records=subjects, columns=["tenant_id", "id", "ref_hash"]
                )
                await owner.copy_records_to_table(
                    "subject_keys",
                    records=subject_keys,
                    columns=["tenant_id", "id", "subject_id", "category", "generation",
                             "kek_version", "wrapped_key"],
                )  # fmt: skip
            await owner.execute("ANALYZE subjects; ANALYZE subject_keys")
        finally:
            await owner.close()
    return time.perf_counter() - started


async def time_new_epoch(settings: Settings, url: str) -> tuple[float, int, int]:
    """(seconds, epoch, subject keys rewrapped)."""
    async with operator_context(settings, url) as ctx:
        started = time.perf_counter()
        report = await start_new_epoch(ctx.db, ctx.keyring, ctx.root)
        elapsed = time.perf_counter() - started
    return elapsed, report.epoch, sum(t.rewrapped for t in report.tenants)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="epochs to start one after another")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="datavault-epoch-bench-") as tmp:
        workdir = Path(tmp)
        url = database_url(workdir)
        asyncio.run(migrate(url))
        settings = Settings(data_dir=workdir / "data", database_url=url)
        loaded = asyncio.run(load_subject_keys(settings, url, args.tenants, args.keys))
        print(f"loaded {args.keys:,} subject keys in {args.tenants} tenant(s): {loaded:.1f} s")
        times = []
        for _ in range(args.rounds):
            elapsed, epoch, rewrapped = asyncio.run(time_new_epoch(settings, url))
            times.append(elapsed)
            print(
                f"new-epoch -> epoch {epoch}: {rewrapped:,} subject keys rewrapped in "
                f"{elapsed:.1f} s ({rewrapped / elapsed:,.0f} keys/s)"
            )
        if len(times) > 1:
            print(f"median {statistics.median(times):.1f} s over {len(times)} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
