"""Erasure benchmark: (a) time from an erasure request to `completed` for a subject with
1, 100 and 10,000 artefacts (should be flat: shredding destroys the subject's keys, it
does not touch the data), and (b) the throughput of N erasure requests through the API
and the time until the workers have completed them all.

    python bench/erasure_bench.py [--requests 10000] [--artefacts 1,100,10000]
                                  [--concurrency 8] [--no-subject-data] [--tenants 1]

The vault runs as `python -m vault serve` (API and background jobs in one process) in a
temporary data directory: with DATABASE_URL set it uses that PostgreSQL (the schema is
migrated in place; the bench creates its own tenants), otherwise the embedded one. It is
stopped by PID at the end. Everything goes through the HTTP API with httpx clients:
artefacts are 1 KiB each, uploaded by --concurrency concurrent requests; for (b) each
subject first gets one small record (unless --no-subject-data), so every erasure really
destroys keys, and the tenant's erasure rate brake is switched off.

Times for (a): "client" is request → the first poll (every 50 ms) that sees `completed`;
"shred" is requested_at → destroyed_at of the last key (server clock; now() in the shred
transaction, so its start, not its commit); "completed" is requested_at → completed_at
(server clock). The executor and the shred-ledger publisher each run every 2 s, so both
end-to-end times include up to ~4 s of waiting for a round. The executor takes up to 50
erasures per tenant in turn and repeats until no tenant has due work left; --tenants
spreads the requests over several tenants.

Measured 2026-11-25/26 on 2 cores (embedded PostgreSQL, default run, 10 minutes in all,
machine shared with other work): (a) shred 1.83 / 0.03 / 1.74 s, completed 1.86 / 2.09 /
3.61 s, client 1.90 / 2.14 / 3.66 s for 1 / 100 / 10,000 artefacts: flat, the shred
destroys the subject's 2 keys whatever the data (the spread is where the request falls in
the executor's and the ledger publisher's 2 s rounds); (b) 10,000 requests accepted at
190/s (8 clients), all completed 149 s after the first request: 67 erasures/s end to end.
An earlier run (older executor, 100 per tenant per round) gave 185/s accepted and 33/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from processes import free_port, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
KIB = 1024


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
    results. Prints progress every 10%."""
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


def shred_subject(
    vault: Vault, http: httpx.Client, keys: dict[str, dict[str, str]], n: int, concurrency: int
) -> dict[str, float]:
    ref = f"subject-{n}"
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

    upload_seconds, _ = asyncio.run(
        run_concurrently(vault.url, n, concurrency, f"upload {n}", upload)
    )
    started = time.perf_counter()
    erasure = check(http.post(f"/v1/subjects/{ref}/erasure", headers=keys["privacy"]), 202).json()
    while True:
        shown = check(http.get(f"/v1/erasures/{erasure['id']}", headers=keys["privacy"]), 200)
        status = shown.json()
        if status["status"] == "completed":
            break
        if (
            status["status"] not in ("scheduled", "in_progress")
            or time.perf_counter() - started > 600
        ):
            raise SystemExit(f"erasure of {ref} ended {status['status']}")
        time.sleep(0.05)
    client_seconds = time.perf_counter() - started
    requested = stamp(status["requested_at"])
    last_destroyed = max(stamp(s["destroyed_at"]) for s in status["shredded"])
    return {
        "artefacts": n,
        "upload_s": upload_seconds,
        "keys": len(status["shredded"]),
        "client_s": client_seconds,
        "shred_s": (last_destroyed - requested).total_seconds(),
        "completed_s": (stamp(status["completed_at"]) - requested).total_seconds(),
    }


def open_count(http: httpx.Client, privacy: list[dict[str, str]]) -> bool:
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


def completed_gauge(http: httpx.Client) -> int:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith('datavault_erasures{status="completed"}'):
            return int(float(line.split()[-1]))
    return -1


def throughput(
    vault: Vault,
    http: httpx.Client,
    tenants: list[dict[str, dict[str, str]]],
    requests: int,
    concurrency: int,
    subject_data: bool,
) -> dict[str, float]:
    def keys_of(index: int) -> dict[str, dict[str, str]]:
        return tenants[index % len(tenants)]

    data_seconds = 0.0
    if subject_data:

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
            run_concurrently(vault.url, requests, concurrency, "records", put)
        )
    baseline = completed_gauge(http)

    async def erase(client: httpx.AsyncClient, index: int) -> None:
        check(
            await client.post(
                f"/v1/subjects/many-{index}/erasure", headers=keys_of(index)["privacy"]
            ),
            202,
        )

    started = time.perf_counter()
    request_seconds, _ = asyncio.run(
        run_concurrently(vault.url, requests, concurrency, "erasure requests", erase)
    )
    privacy = [keys["privacy"] for keys in tenants]
    last_report = time.perf_counter()
    while open_count(http, privacy):
        if time.perf_counter() - last_report > 15:
            last_report = time.perf_counter()
            done = completed_gauge(http) - baseline
            elapsed = last_report - started
            print(
                f"  completion: ~{done}/{requests} completed after {elapsed:.0f} s "
                "(monitor gauge, refreshed every 15 s)",
                flush=True,
            )
        if time.perf_counter() - started > 3600:
            raise SystemExit("erasures still open after an hour")
        time.sleep(0.5)
    all_done = time.perf_counter() - started
    return {
        "requests": requests,
        "data_s": data_seconds,
        "request_s": request_seconds,
        "all_completed_s": all_done,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--artefacts", default="1,100,10000", help="comma-separated counts")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument(
        "--tenants", type=int, default=1, help="spread the (b) requests over this many tenants"
    )
    parser.add_argument(
        "--no-subject-data",
        action="store_true",
        help="(b): erase unknown subjects (nothing to shred) instead of one record each",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.artefacts.split(",") if n]

    work = Path(tempfile.mkdtemp(prefix="datavault-erasure-bench-"))
    vault = Vault(work)
    try:
        vault.wait_ready()
        with httpx.Client(base_url=vault.url, timeout=120) as http:
            keys = vault.tenant(http, "bench-shred")
            tenants = [vault.tenant(http, f"bench-many-{i}") for i in range(args.tenants)]
            shred_subject(vault, http, keys, 1, 1)  # warm up: imports, pools, key caches
            rows = []
            for n in sizes:
                print(f"(a) subject with {n} artefacts", flush=True)
                rows.append(shred_subject(vault, http, keys, n, args.concurrency))
                print(f"  {rows[-1]}", flush=True)
            print(f"(b) {args.requests} erasure requests over {args.tenants} tenant(s)", flush=True)
            many = throughput(
                vault, http, tenants, args.requests, args.concurrency, not args.no_subject_data
            )
    finally:
        stop(vault.process)

    print()
    print("(a) erasure of one subject, request -> completed (1 KiB artefacts)")
    print(
        f"{'artefacts':>10}{'upload s':>10}{'keys':>6}{'shred s':>10}"
        f"{'completed s':>13}{'client s':>10}"
    )
    for row in rows:
        print(
            f"{row['artefacts']:>10}{row['upload_s']:>10.1f}{row['keys']:>6}"
            f"{row['shred_s']:>10.2f}{row['completed_s']:>13.2f}{row['client_s']:>10.2f}"
        )
    print()
    total = int(many["requests"])
    print(f"(b) {total} erasure requests through the API ({args.concurrency} clients)")
    if many["data_s"]:
        print(f"  setup: one record per subject: {many['data_s']:.1f} s")
    print(
        f"  requests: {many['request_s']:.1f} s = {total / many['request_s']:.0f} requests/s "
        "(202 Accepted)"
    )
    print(
        f"  all completed by the workers: {many['all_completed_s']:.1f} s after the first "
        f"request = {total / many['all_completed_s']:.0f} erasures/s end to end"
    )
    print(f"(vault log: {vault.log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
