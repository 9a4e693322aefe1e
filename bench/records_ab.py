"""Two vaults' record API under load_bench's mix, measured in alternating slices.

usage: records_ab.py TREE_A TREE_B [--slice 5] [--rounds 6] [--put-percent 30]

Each tree is a checkout with its own .venv (`make .venv/.installed-test` there), e.g. a
worktree of main and a branch (both at the same migrations: they share one database).
Both vaults run at once as `python -m vault api`, each with its own tenant and
ingest+read key on one embedded PostgreSQL; load_bench's client (32 clients, 30% PUT /
60% GET / 10% list) drives one and then the other in `--slice`-second slices, the order
alternating by round, so both see the same minutes of a shared machine (issue 19,
seventh round: sequential load_bench runs of one tree and then the other differed by
±10% in throughput and CPU, more than the changes measured). Prints per vault: req/s,
p50/p99, and the CPU per request of its process and of PostgreSQL (all of PostgreSQL's
CPU during its slices: the other vault is idle then). Run it with the same tree twice
for the noise.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import uvloop
from load_bench import vault_env
from load_client import Tally, Workload, drive, percentile, populate
from processes import cpu_seconds, free_port, postgres_cpu_seconds, stop, wait_ready

WARM_UP_SECONDS = 4.0


@dataclass
class Side:
    name: str
    tree: Path
    process: subprocess.Popen[bytes]
    workload: Workload
    tally: Tally = field(default_factory=Tally)
    cpu: float = 0.0
    db_cpu: float = 0.0
    seconds: float = 0.0


def start(name: str, tree: Path, work: Path, database_url: str, args: argparse.Namespace) -> Side:
    python = str(tree / ".venv" / "bin" / "python")
    port = free_port()
    env = vault_env(work, database_url, port)
    log = work / f"vault-{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [python, "-m", "vault", "api"], env=env, cwd=tree, stdout=sink, stderr=subprocess.STDOUT
        )
    wait_ready(f"http://127.0.0.1:{port}/healthz", process, log)
    created = subprocess.run(
        [python, "-m", "vault", "tenant", "create", f"records-ab-{name.lower()}", "--json"],
        env=env, cwd=tree, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if created.returncode != 0:
        raise SystemExit(f"tenant create failed: {created.stdout[-500:]} {created.stderr[-1500:]}")
    made = httpx.post(
        f"http://127.0.0.1:{port}/v1/api-keys",
        json={"name": "load", "scopes": ["ingest", "read"]},
        headers={"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"},
        timeout=30,
    )
    if made.status_code != 201:
        raise SystemExit(f"key create failed: {made.status_code} {made.text[:300]}")
    workload = Workload(
        (port,), str(made.json()["secret"]), args.subjects, args.payload_bytes, args.put_percent
    )
    return Side(name, tree, process, workload)


def measure(sides: list[Side], database_url: str, pgdata: Path, args: argparse.Namespace) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
        for side in sides:
            run.run(populate(side.workload, args.concurrency))

        async def analyze() -> None:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("ANALYZE")
            finally:
                await conn.close()

        run.run(analyze())  # as load_bench does: plans for the populated tables
        for side in sides:
            run.run(drive(side.workload, args.concurrency, WARM_UP_SECONDS, seed=1))
        for round_number in range(args.rounds):
            for side in sides if round_number % 2 == 0 else sides[::-1]:
                cpu, db_cpu = cpu_seconds(side.process.pid), postgres_cpu_seconds(pgdata)
                started = time.perf_counter()
                tally = run.run(
                    drive(side.workload, args.concurrency, args.slice, seed=2 + round_number)
                )
                side.seconds += time.perf_counter() - started
                side.cpu += cpu_seconds(side.process.pid) - cpu
                side.db_cpu += postgres_cpu_seconds(pgdata) - db_cpu
                side.tally.latencies += tally.latencies
                side.tally.errors += tally.errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree_a", type=Path)
    parser.add_argument("tree_b", type=Path)
    parser.add_argument("--slice", type=float, default=5.0, help="seconds per slice")
    parser.add_argument("--rounds", type=int, default=6, help="slices per vault")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--payload-bytes", type=int, default=512)
    parser.add_argument("--put-percent", type=int, default=30, choices=range(0, 91))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="datavault-records-ab-"))
    from vault.db.embedded import embedded_postgres_url
    from vault.db.migrate import migrate

    atexit.register(shutil.rmtree, work / "pg", True)
    database_url = embedded_postgres_url(work / "pg")
    asyncio.run(migrate(database_url))
    sides: list[Side] = []
    try:
        for name, tree in (("A", args.tree_a), ("B", args.tree_b)):
            sides.append(start(name, tree.resolve(), work, database_url, args))
        measure(sides, database_url, work / "pg" / "postgres", args)
    finally:
        for side in sides:
            stop(side.process)
    errors = 0
    for side in sides:
        tally, count = side.tally, max(1, side.tally.requests)
        errors += sum(tally.errors.values())
        print(
            f"{side.name} {side.tree}: {tally.requests} requests, "
            f"{tally.requests / side.seconds:.0f} req/s, "
            f"p50 {1000 * percentile(tally.latencies, 0.5):.1f} / "
            f"p99 {1000 * percentile(tally.latencies, 0.99):.1f} ms, "
            f"CPU ms/request: vault {1000 * side.cpu / count:.3f} + "
            f"PostgreSQL {1000 * side.db_cpu / count:.3f}, errors {dict(tally.errors)}"
        )
    print(f"(logs: {work})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
