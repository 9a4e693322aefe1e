"""Erasure benchmark: (a) time from an erasure request to `completed` (keys destroyed, the
shred-ledger entry durable in the blob store, the receipt issued) for subjects with 1 and
1,000 artefacts, several subjects each; (b) a burst of N erasure requests through the API:
how many the workers complete per minute and how long each one took.

    python bench/erasure_bench.py [--artefacts 1,1000] [--samples 20] [--requests 10000]
                                  [--concurrency 32] [--no-subject-data] [--tenants 1]
                                  [--analyze] [--py-spy DIR]

The vault runs as `python -m vault serve` (API and background jobs in one process) in a
temporary data directory: with DATABASE_URL set it uses that PostgreSQL (the schema is
migrated in place; the bench creates its own tenants), otherwise the embedded one. It is
stopped by PID at the end. Everything goes through the HTTP API with httpx clients.

(a) For each artefact count, --samples subjects each get that many 1 KiB `support`
artefacts (8 concurrent uploads) and one `account` record, then one at a time an erasure
(no grace period, no hold) is requested and polled every 20 ms until `completed`.
"completed" is requested_at -> completed_at on the server's clock (both now() of their
transactions); "client" is the request sent -> the poll that saw `completed`. Goal 4 of
issue 19: p99 < 1 s, and the 1,000-artefact median within 1.5x of the 1-artefact one.
With --samples 20 the p99 is the worst sample. --analyze has PostgreSQL ANALYZE after each
count's uploads: without it the erasures run within a minute of the tables filling, on
whatever statistics autovacuum has (not) gathered yet (bench/README.md, issue 19 sixth round).

(b) --requests subjects each get one small record (unless --no-subject-data, which erases
unknown subjects: nothing to shred), the tenant's erasure rate brake is switched off, and
--concurrency clients request all the erasures as fast as they are answered. Once none is
open, every erasure is read back: per-erasure time is requested_at -> completed_at, and
the rate is the count over first requested_at -> last completed_at. Goal 5: >= 10,000
completed per minute, per-erasure p99 < 10 s. --tenants spreads the requests over
several tenants. --py-spy DIR profiles the vault during (b).

Figures: see bench/README.md ("Issue 19" and "Capacity").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from processes import free_port, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
KIB = 1024
GOAL_P99_S = 1.0
GOAL_FLATNESS = 1.5
GOAL_PER_MINUTE = 10_000
GOAL_BURST_P99_S = 10.0


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def quantile(values: list[float], share: float) -> float:
    """The nearest-rank quantile (the worst value for share 0.99 of fewer than 100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Vault:
    """One `python -m vault serve` in its own data directory; stopped by PID."""

    def __init__(self, work: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_")}
        port = free_port()
        env.update(
            DATAVAULT_DATA_DIR=str(work / "data"),
            DATAVAULT_PORT=str(port),
            DATAVAULT_HOST="127.0.0.1",
            DATAVAULT_LOG_LEVEL="warning",
        )
        self.env = env
        self.work = work
        self.url = f"http://127.0.0.1:{port}"
        self.log = work / "vault.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vault", "serve"],
                env=env,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def database_url(self) -> str:
        """DATABASE_URL, or the embedded server's (its socket and port from postmaster.pid)."""
        if os.environ.get("DATABASE_URL"):
            return os.environ["DATABASE_URL"]
        pid_file = (self.work / "data" / "postgres" / "postmaster.pid").read_text().splitlines()
        return f"postgresql://postgres@/datavault?host={pid_file[4]}&port={pid_file[3]}"

    def analyze(self) -> None:
        """ANALYZE, as autovacuum would within a minute or so of the uploads (--analyze)."""

        async def run() -> None:
            conn = await asyncpg.connect(self.database_url())
            try:
                await conn.execute("ANALYZE")
            finally:
                await conn.close()

        asyncio.run(run())

    def wait_ready(self, timeout: float = 120) -> None:
        wait_ready(f"{self.url}/readyz", self.process, self.log, timeout)

    def tenant(self, http: httpx.Client, slug: str) -> dict[str, dict[str, str]]:
        """A tenant without the erasure rate brake; its ingest+read and erasure keys."""
        created = subprocess.run(
            [sys.executable, "-m", "vault", "tenant", "create", slug, "--json"],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise SystemExit(f"tenant create failed: {created.stderr}")
        admin = bearer(json.loads(created.stdout)["api_key"])
        patched = http.patch(
            "/v1/tenant/settings", json={"erasure_rate_limit_per_hour": None}, headers=admin
        )
        if patched.status_code != 200:
            raise SystemExit(f"settings failed: {patched.text}")
        keys = {}
        for name, scopes in (("app", ["ingest", "read"]), ("privacy", ["erasure"])):
            made = http.post("/v1/api-keys", json={"name": name, "scopes": scopes}, headers=admin)
            if made.status_code != 201:
                raise SystemExit(f"key create failed: {made.text}")
            keys[name] = bearer(made.json()["secret"])
        return keys


async def run_concurrently(
    url: str, count: int, concurrency: int, label: str, one: Any
) -> tuple[float, list[Any]]:
    """Call `one(http, i)` for i in range(count) with `concurrency` clients; seconds and
    results. Prints progress every 10% of a large count."""
    results: list[Any] = [None] * count
    next_index = 0
    done = 0
    step = max(1, count // 10)
    started = time.perf_counter()

    async def client() -> None:
        nonlocal next_index, done
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while next_index < count:
                index = next_index
                next_index += 1
                results[index] = await one(http, index)
                done += 1
                if count >= 1000 and done % step == 0:
                    rate = done / (time.perf_counter() - started)
                    print(f"  {label}: {done}/{count} ({rate:.0f}/s)", flush=True)

    await asyncio.gather(*(client() for _ in range(min(concurrency, count))))
    return time.perf_counter() - started, results


def check(response: httpx.Response, expected: int) -> httpx.Response:
    if response.status_code != expected:
        raise SystemExit(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response


def fill_subject(vault: Vault, keys: dict[str, dict[str, str]], ref: str, n: int) -> None:
    """`n` 1 KiB artefacts and one record for subject `ref`."""
    body = os.urandom(KIB)

    async def upload(client: httpx.AsyncClient, index: int) -> None:
        check(
            await client.post(
                f"/v1/subjects/{ref}/artefacts?category=support",
                content=body,
                headers={**keys["app"], "Content-Type": "application/octet-stream"},
            ),
            201,
        )

    asyncio.run(run_concurrently(vault.url, n, 8, f"upload {n}", upload))
    with httpx.Client(base_url=vault.url, timeout=120) as http:
        check(
            http.put(
                f"/v1/subjects/{ref}/records/profile?category=account",
                json={"ref": ref},
                headers=keys["app"],
            ),
            201,
        )


def erase_and_wait(
    http: httpx.Client, keys: dict[str, dict[str, str]], ref: str
) -> dict[str, float]:
    started = time.perf_counter()
    erasure = check(http.post(f"/v1/subjects/{ref}/erasure", headers=keys["privacy"]), 202).json()
    while True:
        status = check(
            http.get(f"/v1/erasures/{erasure['id']}", headers=keys["privacy"]), 200
        ).json()
        if status["status"] == "completed":
            break
        if status["status"] not in ("scheduled", "in_progress"):
            raise SystemExit(f"erasure of {ref} ended {status['status']}")
        if time.perf_counter() - started > 600:
            raise SystemExit(f"erasure of {ref} still {status['status']} after 10 minutes")
        time.sleep(0.02)
    client_seconds = time.perf_counter() - started
    requested = stamp(status["requested_at"])
    return {
        "keys": len(status["shredded"]),
        "client_s": client_seconds,
        "completed_s": (stamp(status["completed_at"]) - requested).total_seconds(),
    }


def latency(
    vault: Vault, keys: dict[str, dict[str, str]], sizes: list[int], samples: int,
    analyze: bool = False,
) -> dict[int, list[dict[str, float]]]:  # fmt: skip
    rows: dict[int, list[dict[str, float]]] = {}
    for n in sizes:
        print(f"(a) {samples} subjects with {n} artefacts each: uploading", flush=True)
        refs = [f"subject-{n}-{i}" for i in range(samples)]
        for ref in refs:
            fill_subject(vault, keys, ref, n)
        if analyze:
            vault.analyze()
        print(f"(a) erasing them one at a time (load average {load_average()})", flush=True)
        with httpx.Client(base_url=vault.url, timeout=120) as http:
            rows[n] = [erase_and_wait(http, keys, ref) for ref in refs]
    return rows


def open_erasures(http: httpx.Client, privacy: list[dict[str, str]]) -> bool:
    """True while any tenant has a scheduled or in-progress erasure."""
    for headers in privacy:
        for status in ("scheduled", "in_progress"):
            listed = check(
                http.get("/v1/erasures", params={"status": status, "limit": 1}, headers=headers),
                200,
            )
            if listed.json()["items"]:
                return True
    return False


def all_erasures(http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = check(http.get("/v1/erasures", params=params, headers=headers), 200).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def burst(
    vault: Vault, http: httpx.Client, tenants: list[dict[str, dict[str, str]]],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    requests = args.requests

    def keys_of(index: int) -> dict[str, dict[str, str]]:
        return tenants[index % len(tenants)]

    data_seconds = 0.0
    if not args.no_subject_data:

        async def put(client: httpx.AsyncClient, index: int) -> None:
            check(
                await client.put(
                    f"/v1/subjects/many-{index}/records/profile?category=account",
                    json={"n": index},
                    headers=keys_of(index)["app"],
                ),
                201,
            )

        data_seconds, _ = asyncio.run(
            run_concurrently(vault.url, requests, args.concurrency, "records", put)
        )

    async def erase(client: httpx.AsyncClient, index: int) -> None:
        check(
            await client.post(
                f"/v1/subjects/many-{index}/erasure", headers=keys_of(index)["privacy"]
            ),
            202,
        )

    print(f"(b) load average before the burst: {load_average()}", flush=True)
    spy = None
    if args.py_spy is not None:
        spy = subprocess.Popen(
            ["py-spy", "record", "-p", str(vault.process.pid), "-r", "100", "-f", "speedscope",
             "-o", str(args.py_spy / "vault-burst.json")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
    started = time.perf_counter()
    request_seconds, _ = asyncio.run(
        run_concurrently(vault.url, requests, args.concurrency, "erasure requests", erase)
    )
    privacy = [keys["privacy"] for keys in tenants]
    while open_erasures(http, privacy):
        if time.perf_counter() - started > 3600:
            raise SystemExit("erasures still open after an hour")
        time.sleep(0.5)
    all_done = time.perf_counter() - started
    if spy is not None:
        spy.send_signal(2)
        spy.wait(timeout=120)
    load = load_average()
    erasures = [e for headers in privacy for e in all_erasures(http, headers)]
    burst_ones = [e for e in erasures if e["status"] == "completed"]
    if len(burst_ones) != requests:
        raise SystemExit(f"{len(burst_ones)} of {requests} erasures completed")
    first = min(stamp(e["requested_at"]) for e in burst_ones)
    last = max(stamp(e["completed_at"]) for e in burst_ones)
    each = [
        (stamp(e["completed_at"]) - stamp(e["requested_at"])).total_seconds() for e in burst_ones
    ]
    return {
        "data_s": data_seconds,
        "request_s": request_seconds,
        "client_all_done_s": all_done,
        "server_span_s": (last - first).total_seconds(),
        "each": each,
        "load": load,
    }


def report(
    rows: dict[int, list[dict[str, float]]], many: dict[str, Any] | None, args: argparse.Namespace
) -> None:
    print()
    print("(a) erasure of one subject, request -> completed (ledger entry durable, receipt issued)")
    print(
        f"{'artefacts':>10}{'samples':>9}{'keys':>6}{'p50 s':>9}{'p99 s':>9}{'max s':>9}"
        f"{'client p50':>12}{'client p99':>12}"
    )
    medians = {}
    worst = 0.0
    for n, samples in rows.items():
        completed = [s["completed_s"] for s in samples]
        client = [s["client_s"] for s in samples]
        medians[n] = statistics.median(completed)
        worst = max(worst, quantile(completed, 0.99), quantile(client, 0.99))
        print(
            f"{n:>10}{len(samples):>9}{samples[0]['keys']:>6}{medians[n]:>9.3f}"
            f"{quantile(completed, 0.99):>9.3f}{max(completed):>9.3f}"
            f"{statistics.median(client):>12.3f}{quantile(client, 0.99):>12.3f}"
        )
    if len(medians) > 1:
        low, high = min(medians), max(medians)
        flat = medians[high] / medians[low]
        print(
            f"goal 4: p99 (server or client, the worse) {worst:.3f} s (< {GOAL_P99_S}: "
            f"{'met' if worst < GOAL_P99_S else 'NOT met'}); median {high} / {low} artefacts "
            f"{flat:.2f} (<= {GOAL_FLATNESS}: {'met' if flat <= GOAL_FLATNESS else 'NOT met'})"
        )
    if many is None:
        return
    total = len(many["each"])
    print()
    print(f"(b) {total} erasure requests through the API ({args.concurrency} clients, "
          f"{args.tenants} tenant(s))")  # fmt: skip
    if many["data_s"]:
        print(f"  setup: one record per subject: {many['data_s']:.1f} s")
    print(f"  requests answered (202): {many['request_s']:.1f} s = "
          f"{total / many['request_s']:.0f}/s")  # fmt: skip
    per_minute = total / many["server_span_s"] * 60
    p99 = quantile(many["each"], 0.99)
    print(
        f"  first request -> last completed: {many['server_span_s']:.1f} s (server clock; "
        f"client saw none open after {many['client_all_done_s']:.1f} s) = "
        f"{per_minute:,.0f} completed per minute"
    )
    print(
        f"  per erasure, request -> completed: p50 {statistics.median(many['each']):.2f} s, "
        f"p99 {p99:.2f} s, max {max(many['each']):.2f} s; load average after: {many['load']}"
    )
    print(
        f"goal 5: {per_minute:,.0f} per minute (>= {GOAL_PER_MINUTE:,}: "
        f"{'met' if per_minute >= GOAL_PER_MINUTE else 'NOT met'}), p99 {p99:.2f} s "
        f"(< {GOAL_BURST_P99_S:g}: {'met' if p99 < GOAL_BURST_P99_S else 'NOT met'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artefacts", default="1,1000", help="comma-separated counts")
    parser.add_argument("--samples", type=int, default=20, help="(a): subjects per count")
    parser.add_argument("--requests", type=int, default=10_000, help="(b): 0 skips it")
    parser.add_argument("--concurrency", type=int, default=32, help="(b): concurrent clients")
    parser.add_argument(
        "--tenants", type=int, default=1, help="spread the (b) requests over this many tenants"
    )
    parser.add_argument(
        "--no-subject-data",
        action="store_true",
        help="(b): erase unknown subjects (nothing to shred) instead of one record each",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="(a): ANALYZE after each count's uploads, before its erasures (issue 19, sixth "
        "round: without it the erasures may run on plans made for the tables' first rows)",
    )
    parser.add_argument("--py-spy", type=Path, help="directory for a py-spy profile of (b)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.artefacts.split(",") if n]
    if args.py_spy is not None:
        if shutil.which("py-spy") is None:
            raise SystemExit("--py-spy needs py-spy on PATH (pip install py-spy)")
        args.py_spy.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {load_average()}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="datavault-erasure-bench-"))
    vault = Vault(work)
    many = None
    try:
        vault.wait_ready()
        with httpx.Client(base_url=vault.url, timeout=120) as http:
            keys = vault.tenant(http, "bench-shred")
            tenants = [vault.tenant(http, f"bench-many-{i}") for i in range(args.tenants)]
            fill_subject(vault, keys, "warm-up", 1)  # imports, pools, key caches
            erase_and_wait(http, keys, "warm-up")
            rows = latency(vault, keys, sizes, args.samples, args.analyze) if sizes else {}
            if args.requests:
                print(f"(b) {args.requests} erasure requests", flush=True)
                many = burst(vault, http, tenants, args)
    finally:
        stop(vault.process)
    report(rows, many, args)
    print(f"load average at end: {load_average()}")
    print(f"(vault log: {vault.log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
