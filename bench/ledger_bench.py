"""Shred-ledger benchmark: what the ledger adds to erasure latency.

    python bench/ledger_bench.py [--batches 1,100] [--rounds 5] [--startup-entries 200000]
                                 [--signing-rounds 20]

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

Signed ledger objects (6 December, same machine under load: load average 7-10 on the 2
cores), the signing table, before (the unsigned format) and after in one run, medians of
20: encoding an object of 1 entry 0.01 -> 0.08 ms, of 300 (an erasure batch) 0.42 ->
1.42 ms, of 5,000 (the publisher's largest) 13.8 -> 37.0 ms; reading one back (parse,
and verify) 0.01 -> 0.14 ms, 0.41 -> 1.51 ms and 11.7 -> 38.1 ms. So about 5 us an entry
each way, plus 0.1 ms an object (the Ed25519 signature itself is tens of microseconds;
the rest is canonicalising the statement). The publish step in the same run: 1 erasure
13.1 ms, 100 erasures 64.0 ms. Start-up after a restore from before 200,000 entries (40
objects): reading and verifying them 4.5 s, the whole start-up 21.6 s, at load average
~9 (the database work dominates; on the idle machine above it was 1.32 s unsigned).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from epoch_bench import database_url

from vault.config import Settings
from vault.db.migrate import migrate
from vault.domain.subject_refs import normalize_ref
from vault.runtime import OperatorContext, operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.erasures import ErasureRequest, ErasureService
from vault.services.ledger import (
    GENESIS,
    encode_entry,
    entries_after_head,
    parse_entry,
    reconcile_on_start,
)
from vault.services.receipts import published_keys
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
    settings: Settings, url: str, batches: list[int], rounds: int, startup_entries: int,
    signing_rounds: int,
) -> None:  # fmt: skip
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
                await publish_pending(ctx.db, ctx.blobs, signer=issuer.signer)
                t2 = time.perf_counter()
                assert len(await complete_published_erasures(ctx.db, issuer)) == size
                t3 = time.perf_counter()
                timings.append((t1 - t0, t2 - t1, t3 - t2))
            shred, ledger, complete = (statistics.median(t[i] for t in timings) for i in range(3))
            print(f"{size:>8} {shred * 1e3:>10.1f} {ledger * 1e3:>10.1f} {complete * 1e3:>12.1f}")
        print(f"(medians of {rounds} rounds; a deployment's publisher is woken by NOTIFY)")
        await _signing_cost(ctx, issuer, signing_rounds)
        if startup_entries:
            await _startup(ctx, issuer, tenant.id, startup_entries)


def _unsigned_object(seq: int, prev: bytes, entries: list[dict[str, object]]) -> bytes:
    """A ledger object as written before ledger signing: the "before" of the comparison."""
    document = {"format": "datavault.shred-ledger", "v": 1, "seq": seq, "prev": prev.hex(),
                "entries": entries}  # fmt: skip
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    hashlib.sha256(data).digest()
    return data


async def _signing_cost(ctx: OperatorContext, issuer: ReceiptIssuer, rounds: int) -> None:
    """What signing costs per object and per entry, before (unsigned, the old format)
    and after (signed) in one run: encoding an object, and reading it back (parse, and
    with signing, verify). Entries as the publisher writes them (a data key each)."""
    jwks = await published_keys(ctx.db)
    now = datetime.now(UTC).isoformat()
    print(f"{'entries':>8} {'encode before':>14} {'encode after':>13} "
          f"{'read before':>12} {'read after':>11} {'bytes before':>13} {'after':>7}")  # fmt: skip
    for size in (1, 300, 5000):
        entries: list[dict[str, object]] = [
            {"tenant_id": str(uuid.uuid4()), "outbox_id": i, "key_kind": "data",
             "key_id": str(uuid.uuid4()), "erasure_id": None, "destroyed_at": now}
            for i in range(size)
        ]  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in ("eb", "ea", "rb", "ra")}
        for _ in range(rounds):
            t0 = time.perf_counter()
            old = _unsigned_object(7, GENESIS, entries)
            t1 = time.perf_counter()
            new, _ = encode_entry(7, GENESIS, entries, issuer.signer)
            t2 = time.perf_counter()
            assert parse_entry(old, jwks, 7).key_id is None
            t3 = time.perf_counter()
            assert parse_entry(new, jwks, 7).key_id == issuer.signer.kid
            t4 = time.perf_counter()
            for key, took in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                times[key].append(took * 1e3)
        eb, ea, rb, ra = (statistics.median(times[k]) for k in times)
        print(f"{size:>8} {eb:>11.2f} ms {ea:>10.2f} ms {rb:>9.2f} ms {ra:>8.2f} ms "
              f"{len(old):>13,} {len(new):>7,}")  # fmt: skip
    print(
        f"(medians of {rounds}; the publisher writes one object per round, at most 5,000 entries)"
    )


async def _startup(
    ctx: OperatorContext, issuer: ReceiptIssuer, tenant_id: uuid.UUID, entries: int
) -> None:
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
    async with ctx.db.untenanted_tx() as conn:
        # Planner statistics for the rows just inserted (autovacuum would take a while):
        # without them marking 5,000 of them published is a nested loop that times out.
        await conn.execute("ANALYZE ledger_outbox")
    while await publish_pending(ctx.db, ctx.blobs, signer=issuer.signer):
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
    objects = await entries_after_head(ctx.db, ctx.blobs)
    seconds = time.perf_counter() - t0
    print(f"  of which reading and verifying the {len(objects)} objects: {seconds:.2f} s")
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
    parser.add_argument("--signing-rounds", type=int, default=20)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="datavault-ledger-bench-") as tmp:
        workdir = Path(tmp)
        url = database_url(workdir)
        asyncio.run(migrate(url))
        settings = Settings(data_dir=workdir / "data", database_url=url)
        asyncio.run(
            run(settings, url, batches, args.rounds, args.startup_entries, args.signing_rounds)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
