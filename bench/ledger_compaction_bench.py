"""Shred-ledger compaction benchmark: the ledger's size before and after folding.

    python bench/ledger_compaction_bench.py [--keys 100000] [--per-object 1,10,5000]

For each shape, `--keys` destroyed keys are written as ledger objects of `--per-object`
entries each, exactly as the publisher writes them (1: every key published on its own, the
worst case; 10: erasures of a subject with several keys; 5,000: the publisher's largest
batch, as under a burst of record replacements). Then a new root-key epoch starts (it
records the ledger head), the old one retires (backup retention 0), and the compaction
folds everything before the new epoch into a checkpoint. Reported: the bytes the ledger
holds before and after (object bodies; an S3 store adds its per-object overhead on top,
which compaction removes too), the time the compaction took (it verifies the whole
ledger first), and `ledger verify` before and after. Runs against its own PostgreSQL
(DATABASE_URL as a superuser URL, else the embedded server in a temporary directory) and
a filesystem blob store; the objects are written straight to the store's directory
without an fsync each, to keep the setup short.

Measured on 2 shared cores (embedded PostgreSQL, filesystem blob store, 6 December 2026,
a busy machine: load average 14-17), 100,000 destroyed keys:

    keys an object  objects  ledger before -> after  a key     on disk before -> after
                 1  100,000    34.72 MB -> 4.27 MB   347 -> 42.7 B  409.6 MB -> 4.27 MB
                10   10,000    22.21 MB -> 0.43 MB   222 -> 4.27 B   41.0 MB -> 0.43 MB
             5,000       20    20.83 MB -> 1.6 kB    208 -> 0.02 B   20.9 MB -> 1.6 kB

    keys an object  compaction  ledger verify before -> after
                 1      70.5 s        29.3 s -> 0.39 s
                10       8.2 s         3.6 s -> 0.02 s
             5,000       1.6 s         1.3 s -> 0.11 s

After: the checkpoint's 32 bytes (43 in base64url) per folded object plus under 1 kB of
statement and signature; on a filesystem every object also takes a whole 4 KiB block,
which is where most of the disk goes. The compaction's time is mostly the verify it does
first plus one removal per object.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from epoch_bench import database_url

from vault.config import Settings
from vault.db.migrate import migrate
from vault.runtime import OperatorContext, operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.ledger import verify_ledger
from vault.services.ledger_checkpoint import CHECKPOINT_PREFIX
from vault.services.ledger_objects import GENESIS, LEDGER_PREFIX, encode_entry, entry_key
from vault.services.receipts import ReceiptSigner
from vault.services.root_epochs import retire_epoch, start_new_epoch
from vault.services.tenants import create_tenant
from workers.ledger_compaction import compact_ledger


def _bytes_under(root: Path, prefix: str) -> tuple[int, int]:
    """The objects' bytes, and what they take on disk (whole filesystem blocks)."""
    folder = root / prefix
    stats = [p.stat() for p in folder.iterdir()] if folder.exists() else []
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def _both(root: Path) -> tuple[int, int]:
    ledger, checkpoints = _bytes_under(root, LEDGER_PREFIX), _bytes_under(root, CHECKPOINT_PREFIX)
    return ledger[0] + checkpoints[0], ledger[1] + checkpoints[1]


async def _write_ledger(ctx: OperatorContext, root: Path, keys: int, per_object: int) -> int:
    """`keys` destroyed data keys (one in ten by an erasure) as objects of `per_object`
    entries, hash-chained; the database's head set to the last. Returns the object count."""
    tenant = await create_tenant(ctx.db, ctx.root, ctx.api_keys, f"b-{uuid.uuid4().hex[:8]}")
    signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
    destroyed = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    (root / LEDGER_PREFIX).mkdir(parents=True, exist_ok=True)
    seq, prev, outbox_id = 0, GENESIS, 0
    for start in range(0, keys, per_object):
        entries = []
        for _ in range(min(per_object, keys - start)):
            outbox_id += 1
            entries.append({
                "tenant_id": str(tenant.id), "outbox_id": outbox_id, "key_kind": "data",
                "key_id": str(uuid.uuid4()),
                "erasure_id": str(uuid.uuid4()) if outbox_id % 10 == 0 else None,
                "destroyed_at": destroyed,
            })  # fmt: skip
        seq += 1
        data, prev = encode_entry(seq, prev, entries, signer)
        (root / entry_key(seq)).write_bytes(data)
    async with ctx.db.untenanted_tx() as conn:
        await conn.execute(
            "INSERT INTO ledger_head (singleton, seq, entry_hash, signed_from) "
            "VALUES (true, $1, $2, 1) "
            "ON CONFLICT (singleton) DO UPDATE SET seq = $1, entry_hash = $2, signed_from = 1",
            seq, prev,
        )  # fmt: skip
    return seq


async def one_shape(settings: Settings, url: str, keys: int, per_object: int) -> None:
    root = settings.data_dir / "blobs"
    async with operator_context(settings, url) as ctx:
        objects = await _write_ledger(ctx, root, keys, per_object)
        before, disk_before = _both(root)
        t0 = time.perf_counter()
        await verify_ledger(ctx.db, ctx.blobs)
        verify_before = time.perf_counter() - t0
        await start_new_epoch(ctx.db, ctx.keyring, ctx.root)
        await retire_epoch(ctx.db, ctx.root, 1, 0)
        issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, settings)
        t0 = time.perf_counter()
        report = await compact_ledger(ctx.db, ctx.blobs, issuer)
        compact = time.perf_counter() - t0
        assert report.folded_objects == objects, report
        after, disk_after = _both(root)
        t0 = time.perf_counter()
        summary = await verify_ledger(ctx.db, ctx.blobs)
        verify_after = time.perf_counter() - t0
        assert summary.folded_entries == keys and summary.objects == 0
    print(
        f"{per_object:>10,} {objects:>8,} {before / 1e6:>8.2f} MB {after / 1e6:>8.4f} MB "
        f"{before / keys:>6.1f} B {after / keys:>6.2f} B "
        f"{disk_before / 1e6:>7.1f} MB {disk_after / 1e6:>6.2f} MB "
        f"{compact:>8.1f} {verify_before:>7.2f} / {verify_after:.2f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--per-object", default="1,10,5000")
    parser.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = [int(n) for n in args.per_object.split(",")]
    if not args.no_header:
        print(f"{args.keys:,} destroyed keys")
        print(f"{'per object':>10} {'objects':>8} {'before':>11} {'after':>11} "
              f"{'per key before / after':>17} {'on disk before / after':>20} "
              f"{'compact s':>8} {'verify s before / after':>16}", flush=True)  # fmt: skip
    if len(shapes) > 1:
        # Each shape in a process of its own: its own embedded PostgreSQL, stopped at exit.
        for shape in shapes:
            subprocess.run(
                [sys.executable, __file__, "--keys", str(args.keys), "--per-object",
                 str(shape), "--no-header"],
                check=True,
            )  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory(prefix="datavault-compaction-bench-") as tmp:
        workdir = Path(tmp)
        url = database_url(workdir)
        asyncio.run(migrate(url))
        settings = Settings(data_dir=workdir / "data", database_url=url, backup_retention_days=0)
        asyncio.run(one_shape(settings, url, args.keys, shapes[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
