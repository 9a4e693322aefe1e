"""Red team 9: how often reads' holds and a batch of shreds end in a deadlock with nothing
widened, and what the readers are answered. Written against migration 0039 (holds
share-locked the data key's row before the subject key's; a shred updates them the other
way round: 0 to 47 deadlocks a round, readers answered 500); since migration 0042 holds
take no row lock (tests/e2e/test_redteam9_hold_shred_deadlock.py: none, window widened).

Per round: a tenant with SUBJECTS subjects, each with a record, an artefact and a
disclosure; READERS clients read while every subject's erasure is requested and one
worker pass shreds them (the executor's batches: many subjects per transaction): the
even clients list the tenant's disclosures (one hold over every subject's identity key),
the odd ones download the subjects' artefacts in turn. Printed per round: the deadlocks
PostgreSQL counted and the answers' statuses so far (a 500 is a reader that lost the
deadlock; 404/410 are reads after the shred).

    SUBJECTS=30 ROUNDS=3 READERS=4 .venv/bin/python bench/hold_deadlock_stress.py
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    put_record,
    rfc3339,
    subject_url,
    uploaded,
)
from tests.jobs import run_worker_pass
from tests.support import ServerThread, make_tenant, private_server, stop_embedded_postgres
from vault.db.embedded import embedded_postgres_url

SUBJECTS = int(os.environ.get("SUBJECTS", "30"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
READERS = int(os.environ.get("READERS", "4"))


def _deadlocks(url: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            found = await conn.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
            return int(found)
        finally:
            await conn.close()

    return asyncio.run(count())


def _round(vault: ServerThread, number: int, statuses: Counter[int]) -> int:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        refs = [f"s{number}-{n}-{uuid.uuid4().hex[:6]}" for n in range(SUBJECTS)]
        items: dict[str, str] = {}
        for ref in refs:
            assert put_record(http, app, ref, "profile", b'{"a": 1}').status_code == 201
            items[ref] = uploaded(http, app, ref, b"x" * 1000)["id"]
            disclosure: dict[str, Any] = {
                "subject_ref": ref, "recipient": "Politie", "legal_basis": "Art. 6",
                "reference": "PV-1", "categories": ["account"],
                "disclosed_at": rfc3339(datetime.now(UTC)), "description": "handed over",
            }  # fmt: skip
            assert http.post("/v1/disclosures", json=disclosure, headers=auth(officer)).is_success
        before = _deadlocks(vault.database_url)
        stop = threading.Event()

        def reader(n: int) -> None:
            with vault.client() as other:
                turn = n
                while not stop.is_set():
                    if n % 2 == 0:
                        got = other.get(
                            "/v1/disclosures", params={"limit": 100}, headers=auth(officer),
                            timeout=60,
                        )  # fmt: skip
                    else:
                        ref = refs[turn % SUBJECTS]
                        turn += 1
                        got = other.get(
                            artefact_url(ref, items[ref], "content"), headers=auth(officer),
                            timeout=60,
                        )  # fmt: skip
                    statuses[got.status_code] += 1

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        for ref in refs:
            assert http.post(subject_url(ref, "erasure"), headers=auth(privacy)).status_code == 202
        run_worker_pass(vault)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
    return _deadlocks(vault.database_url) - before


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}")
    pg_dir = Path(tempfile.mkdtemp(prefix="datavault-bench-pg-"))
    data_dir = Path(tempfile.mkdtemp(prefix="datavault-bench-data-"))
    try:
        admin_url = os.environ.get("DATABASE_URL") or embedded_postgres_url(pg_dir)
        with private_server(admin_url, data_dir) as vault:
            statuses: Counter[int] = Counter()
            for number in range(ROUNDS):
                deadlocks = _round(vault, number, statuses)
                print(f"round {number}: deadlocks {deadlocks}, statuses {dict(statuses)}")
    finally:
        stop_embedded_postgres(pg_dir)
        shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
