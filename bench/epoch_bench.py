"""Root-key epoch benchmark: a new epoch over N subjects and M live data keys, under HTTP
traffic, next to the raw unwrap+wrap rate of this machine measured in the same run.

    python bench/epoch_bench.py [--subjects 100000] [--data-keys 1000000] [--tenants 1]

Runs against its own PostgreSQL (DATABASE_URL as a superuser URL: a new database is
created there; otherwise the embedded server in a temporary directory) with a local root
key file. Subject keys and data keys are made by the real code path (fresh 256-bit keys,
wrapped with `wrap_key` under the tenant KEK and the subject key with their canonical
contexts) and loaded with COPY, so the setup is quick. Then `start_new_epoch` (what
`datavault keys new-epoch` runs) is timed: a new root key and KEK versions, every subject
key given new bytes and every live data key rewrapped under them, old KEK versions
destroyed. While it runs, a client reads and replaces records over HTTP on a vault
serving the same database; every answer that is not a success is counted.

Goal (issue 16): at least 20,000 keys/s on 2 cores, and no request errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import asyncpg
import httpx

from crypto.context import PURPOSE_DATA_KEY, KeyContext
from crypto.keywrap import rewrap_key, wrap_key
from crypto.secrets import generate_key
from tests.support import make_tenant, vault_process
from vault.config import Settings
from vault.db.migrate import migrate
from vault.runtime import operator_context
from vault.services.keyring import SubjectKeyRef, data_key_context, subject_key_context
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


def raw_rewrap_rate(count: int = 20_000) -> float:
    """unwrap + wrap per second on this machine (crypto only, one core)."""
    old, new = generate_key(), generate_key()
    context = KeyContext(
        purpose=PURPOSE_DATA_KEY, tenant_id=str(uuid.uuid4()), subject_id=str(uuid.uuid4()),
        category="recording", generation=1, key_id=str(uuid.uuid4()),
    )  # fmt: skip
    wrapped = [wrap_key(old, generate_key(), context) for _ in range(count)]
    started = time.perf_counter()
    for blob in wrapped:
        rewrap_key(old, new, blob, context)
    return count / (time.perf_counter() - started)


async def load(settings: Settings, url: str, tenants: int, subjects: int, data_keys: int) -> float:
    """Create the tenants, subjects, subject keys and data keys; returns the seconds."""
    started = time.perf_counter()
    per_subject = max(1, data_keys // subjects)
    async with operator_context(settings, url) as ctx:
        owner = await asyncpg.connect(url)  # COPY needs the owner (RLS forbids COPY FROM)
        try:
            for n in range(tenants):
                tenant = await create_tenant(ctx.db, ctx.root, ctx.api_keys, f"bench-{n}")
                async with ctx.db.tenant_tx(tenant.id) as conn:
                    kek = await ctx.keyring.kek(conn, tenant.id, 1)
                subject_rows, key_rows, data_rows = [], [], []
                for _ in range(subjects // tenants):
                    subject_id = uuid.uuid4()
                    ref = SubjectKeyRef(tenant.id, uuid.uuid4(), subject_id, "recording", 1)
                    subject_key = generate_key()
                    wrapped = wrap_key(kek, subject_key, subject_key_context(ref, 1))
                    subject_rows.append((tenant.id, subject_id, os.urandom(32)))
                    key_rows.append((tenant.id, ref.id, subject_id, "recording", 1, 1, wrapped))
                    for _ in range(per_subject):
                        key_id = uuid.uuid4()
                        sealed = wrap_key(
                            subject_key, generate_key(), data_key_context(ref, key_id)
                        )
                        data_rows.append((tenant.id, key_id, ref.id, "artefact", sealed, 1))
                await owner.copy_records_to_table(
                    "subjects", records=subject_rows, columns=["tenant_id", "id", "ref_hash"]
                )
                await owner.copy_records_to_table(
                    "subject_keys", records=key_rows,
                    columns=["tenant_id", "id", "subject_id", "category", "generation",
                             "kek_version", "wrapped_key"],
                )  # fmt: skip
                # The generation trigger is for writers; the bench loads what writers made.
                await owner.execute("ALTER TABLE data_keys DISABLE TRIGGER USER")
                await owner.copy_records_to_table(
                    "data_keys", records=data_rows,
                    columns=["tenant_id", "id", "subject_key_id", "purpose", "wrapped_key",
                             "subject_key_version"],
                )  # fmt: skip
                await owner.execute("ALTER TABLE data_keys ENABLE TRIGGER USER")
            await owner.execute("ANALYZE subjects; ANALYZE subject_keys; ANALYZE data_keys")
        finally:
            await owner.close()
    return time.perf_counter() - started


class Traffic:
    """Reads and replaces records on a few subjects of its own tenant while the epoch
    runs, counting every answer that is not a success."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url, self.key = base_url, key
        self.requests = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30) as http:
            n = 0
            while not self._stop.is_set():
                url = f"/v1/subjects/traffic-{n % 20}/records/profile?category=account"
                answers = [http.put(url, json={"n": n}), http.get(url)]
                self.requests += len(answers)
                self.errors += sum(1 for a in answers if not a.is_success)
                n += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--data-keys", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1)
    args = parser.parse_args()
    rate = raw_rewrap_rate()
    print(f"raw unwrap+wrap on this machine (one core): {rate:,.0f} keys/s")
    with tempfile.TemporaryDirectory(prefix="datavault-epoch-bench-") as tmp:
        workdir = Path(tmp)
        url = database_url(workdir)
        asyncio.run(migrate(url))
        settings = Settings(data_dir=workdir / "data", database_url=url)
        loaded = asyncio.run(load(settings, url, args.tenants, args.subjects, args.data_keys))
        print(
            f"loaded {args.subjects:,} subjects and {args.data_keys:,} data keys in "
            f"{args.tenants} tenant(s): {loaded:.1f} s"
        )
        tenant = make_tenant(settings, url, "traffic")
        # The API in a process of its own, as deployed: in this one it would share the
        # interpreter lock with the epoch's cryptography.
        env = {**os.environ, "DATABASE_URL": url, "DATAVAULT_DATA_DIR": str(settings.data_dir),
               "DATAVAULT_LOG_LEVEL": "warning"}  # fmt: skip
        with vault_process(["api"], env, workdir / "api.log") as server:
            created = httpx.post(
                f"{server.url}/v1/api-keys", headers=tenant.auth(), timeout=30,
                json={"name": "traffic", "scopes": ["ingest", "read"]},
            ).json()  # fmt: skip
            traffic = Traffic(server.url, created["secret"])
            traffic.start()
            time.sleep(1)  # the traffic's subjects exist before the epoch starts

            async def epoch() -> tuple[float, int, int, int]:
                async with operator_context(settings, url) as ctx:
                    started = time.perf_counter()
                    report = await start_new_epoch(ctx.db, ctx.keyring, ctx.root)
                    elapsed = time.perf_counter() - started
                subject_keys = sum(t.rewrapped for t in report.tenants)
                data_keys = sum(t.data_keys_rewrapped for t in report.tenants)
                return elapsed, report.epoch, subject_keys, data_keys

            elapsed, number, subject_keys, data_keys = asyncio.run(epoch())
            traffic.stop()
        keys = subject_keys + data_keys
        print(
            f"new-epoch -> epoch {number}: {subject_keys:,} subject keys (new bytes) and "
            f"{data_keys:,} data keys rewrapped in {elapsed:.1f} s: {keys / elapsed:,.0f} "
            f"keys/s, {keys / elapsed / rate:.2f} of the raw rate"
        )
        print(f"traffic meanwhile: {traffic.requests:,} requests, {traffic.errors} errors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
