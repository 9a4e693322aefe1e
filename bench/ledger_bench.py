"""Shred-ledger benchmark: what the ledger adds to erasure latency.

    python bench/ledger_bench.py [--batches 1,100] [--rounds 5] [--startup-entries 200000]

An erasure is `completed` only once its shred-ledger entries are durable in the blob
store. This times the steps between the request and `completed` in-process, without the
workers' polling intervals, for batches of erasures due at once:

- shred: the executor's transactions (keys destroyed, outbox rows written, committed);
- ledger: publishing the pending outbox rows as one hash-chained object (filesystem blob
  store: write, fsync, rename) and marking them published;
- complete: the erasures moved to `completed`, each with its signed receipt.

In a deployment the publisher runs as soon as the executor's shred commits (a PostgreSQL
NOTIFY; every 2 s as the fallback), so the ledger adds about the "ledger" time measured
here (bench/erasure_bench.py measures request -> completed end to end). Runs against its own
PostgreSQL (DATABASE_URL as a superuser URL: a new database is created there; otherwise
the embedded server in a temporary directory). Each subject has a recording and an
account key (plus the identity key its reference is sealed under).

Measured on 2 shared cores (embedded PostgreSQL, filesystem blob store), medians of 5:
1 erasure: shred 21 ms, ledger 18 ms, complete 12 ms; 100 erasures at once: shred
440 ms, ledger 10 ms (one object for all 300 keys), complete 105 ms. So the ledger's
own work is ~10-20 ms per publisher round; its latency is the publisher's interval.
Start-up (26 November, same machine), with 200,000 more entries (41 MB of ledger, ~205
bytes an entry): reading the whole ledger took 1.41 s (~140,000 entries/s); start-up now
reads only what follows the head the database recorded: 0.012 s for a restart,
1.32 s after restoring a backup from before all 200,000.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from epoch_bench import database_url

from vault.config import Settings
from vault.db.migrate import migrate
from vault.domain.subject_refs import normalize_ref
from vault.runtime import OperatorContext, operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.erasures import ErasureRequest, ErasureService
from vault.services.ledger import reconcile_on_start
from vault.services.subject_refs import SubjectRefHasher
from vault.services.subjects import SubjectService
from vault.services.tenants import create_tenant
from workers.erasure import run_due_erasures
from workers.ledger import complete_published_erasures, publish_pending


async def _subjects(ctx: OperatorContext, tenant_id: uuid.UUID, refs: list[str]) -> None:
    hasher = SubjectRefHasher(ctx.db, ctx.root)
    subjects = SubjectService(ctx.keyring, hasher)
    for ref in refs:
        text = normalize_ref(ref)
        ref_hash = await subjects.ref_hash(tenant_id, text)
        async with ctx.db.tenant_tx(tenant_id) as conn:
            subject = await subjects.find_or_create(conn, tenant_id, text, ref_hash)
            for category in ("recording", "account"):
                await ctx.keyring.subject_key_for_write(
                    conn, subject.tenant_id, subject.id, category, subject.generation
                )


async def run(
    settings: Settings, url: str, batches: list[int], rounds: int, startup_entries: int
) -> None:
    async with operator_context(settings, url) as ctx:
        tenant = await create_tenant(ctx.db, ctx.root, ctx.api_keys, "ledger-bench")
        async with ctx.db.tenant_tx(tenant.id) as conn:
            api_key_id = await conn.fetchval("SELECT id FROM api_keys LIMIT 1")
        issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, settings)
        erasures = ErasureService(ctx.db, SubjectRefHasher(ctx.db, ctx.root))
        print(f"{'erasures':>8} {'shred ms':>10} {'ledger ms':>10} {'complete ms':>12}")
        for size in batches:
            timings: list[tuple[float, float, float]] = []
            for n in range(rounds):
                refs = [f"s-{size}-{n}-{i}" for i in range(size)]
                await _subjects(ctx, tenant.id, refs)
                for ref in refs:
                    await erasures.request(
                        tenant.id, normalize_ref(ref), ErasureRequest(None, None), api_key_id
                    )
                t0 = time.perf_counter()
                assert await run_due_erasures(ctx.db, ctx.keyring) == size
                t1 = time.perf_counter()
                await publish_pending(ctx.db, ctx.blobs)
                t2 = time.perf_counter()
                assert len(await complete_published_erasures(ctx.db, issuer)) == size
                t3 = time.perf_counter()
                timings.append((t1 - t0, t2 - t1, t3 - t2))
            shred, ledger, complete = (statistics.median(t[i] for t in timings) for i in range(3))
            print(f"{size:>8} {shred * 1e3:>10.1f} {ledger * 1e3:>10.1f} {complete * 1e3:>12.1f}")
        print(f"(medians of {rounds} rounds; a deployment's publisher is woken by NOTIFY)")
        if startup_entries:
            await _startup(ctx, tenant.id, startup_entries)


async def _startup(ctx: OperatorContext, tenant_id: uuid.UUID, entries: int) -> None:
    """What a long ledger costs at start-up: `entries` more destroyed data keys (as many
    record replaces would leave), published; then start-up timed as a restart (the
    database's head at the ledger's end) and as after restoring a backup from before
    them all (the head moved back to where it was)."""
    head = "SELECT seq, entry_hash FROM ledger_head"
    async with ctx.db.untenanted_tx() as conn:
        before = await conn.fetchrow(head)
    assert before is not None  # the ledger head row exists from the first migration
    async with ctx.db.tenant_tx(tenant_id) as conn:
        await conn.execute(
            "INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, destroyed_at) "
            "SELECT $1, 'data', gen_random_uuid()::text, now() FROM generate_series(1, $2)",
            tenant_id, entries,
        )  # fmt: skip
    while await publish_pending(ctx.db, ctx.blobs):
        pass
    size = sum(p.stat().st_size for p in (ctx.settings.data_dir / "blobs" / "ledger").iterdir())
    print(f"start-up with {entries:,} more ledger entries ({size / 1e6:.0f} MB of ledger):")
    t0 = time.perf_counter()
    await reconcile_on_start(ctx.db, ctx.blobs)
    print(f"  restart: {time.perf_counter() - t0:.3f} s")
    async with ctx.db.untenanted_tx() as conn:
        after = await conn.fetchrow(head)
        assert after is not None
        await conn.execute("UPDATE ledger_head SET seq = $1, entry_hash = $2", *before)
    t0 = time.perf_counter()
    await reconcile_on_start(ctx.db, ctx.blobs)
    seconds = time.perf_counter() - t0
    print(f"  after a restore from before them: {seconds:.2f} s ({entries / seconds:,.0f}/s)")
    async with ctx.db.untenanted_tx() as conn:
        await conn.execute("UPDATE ledger_head SET seq = $1, entry_hash = $2", *after)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,100")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--startup-entries", type=int, default=200_000)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="datavault-ledger-bench-") as tmp:
        workdir = Path(tmp)
        url = database_url(workdir)
        asyncio.run(migrate(url))
        settings = Settings(data_dir=workdir / "data", database_url=url)
        asyncio.run(run(settings, url, batches, args.rounds, args.startup_entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
