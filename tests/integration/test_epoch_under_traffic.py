"""`datavault keys new-epoch` while clients keep writing and reading over HTTP: no request
fails, everything written stays readable, and nothing live is left under an old epoch."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading

import asyncpg
import httpx

from tests.api.helpers import create_key
from tests.support import bearer, make_tenant, running_server
from vault.config import Settings

EPOCHS = 3


def _new_epoch(settings: Settings) -> int:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
    }
    result = subprocess.run(
        [sys.executable, "-m", "vault", "keys", "new-epoch", "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["epoch"])


class Traffic:
    """Writers (records and artefacts) and a reader, each on its own connection, until
    stopped; every unexpected answer is kept."""

    def __init__(self, base_url: str, app: dict[str, str]) -> None:
        self.base_url, self.app = base_url, app
        self.records: dict[str, int] = {}
        self.artefacts: dict[str, tuple[str, bytes]] = {}
        self.failures: list[str] = []
        self.reads = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._guard, args=(self._write_records,)),
            threading.Thread(target=self._guard, args=(self._write_artefacts,)),
            threading.Thread(target=self._guard, args=(self._read,)),
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _guard(self, work: object) -> None:
        assert callable(work)
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            try:
                work(http)
            except Exception as exc:  # a dropped connection is a failure too
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def _check(self, response: httpx.Response, expected: int) -> bool:
        if response.status_code != expected:
            self.failures.append(f"{response.request.method} {response.status_code}")
            return False
        return True

    def _write_records(self, http: httpx.Client) -> None:
        n = 0
        while not self._stop.is_set():
            ref = f"r{n % 40}"
            put = http.put(f"/v1/subjects/{ref}/records/n{n}?category=account", json={"n": n},
                           headers=self.app)  # fmt: skip
            if self._check(put, 201):
                with self._lock:
                    self.records[f"{ref}/n{n}"] = n
            n += 1

    def _write_artefacts(self, http: httpx.Client) -> None:
        n = 0
        while not self._stop.is_set():
            body = os.urandom(random.randint(0, 3000))
            ref = f"a{n % 20}"
            post = http.post(f"/v1/subjects/{ref}/artefacts?category=recording", content=body,
                             headers=self.app)  # fmt: skip
            if self._check(post, 201):
                with self._lock:
                    self.artefacts[post.json()["id"]] = (ref, body)
            n += 1

    def _read(self, http: httpx.Client) -> None:
        while not self._stop.is_set():
            with self._lock:
                records = list(self.records.items())[-50:]
                artefacts = list(self.artefacts.items())[-50:]
            if records:
                path, n = random.choice(records)
                ref, name = path.split("/")
                got = http.get(f"/v1/subjects/{ref}/records/{name}", headers=self.app)
                if self._check(got, 200) and got.json() != {"n": n}:
                    self.failures.append("record read back differs")
            if artefacts:
                artefact_id, (ref, body) = random.choice(artefacts)
                got = http.get(f"/v1/subjects/{ref}/artefacts/{artefact_id}/content",
                               headers=self.app)  # fmt: skip
                if self._check(got, 200) and got.content != body:
                    self.failures.append("artefact read back differs")
            self.reads += 1


async def _wrapping_epochs(url: str) -> dict[str, set[int]]:
    """Root epochs of everything still wrapped (read as the owner: every tenant)."""
    conn = await asyncpg.connect(url)
    try:
        queries = {
            "tenant KEKs": "SELECT root_epoch FROM tenant_keks WHERE wrapped_key IS NOT NULL",
            "tenant HMAC keys": "SELECT root_epoch FROM tenant_hmac_keys"
            " WHERE wrapped_key IS NOT NULL",
            "deployment secrets": "SELECT root_epoch FROM deployment_secrets",
            "receipt keys": "SELECT root_epoch FROM receipt_keys WHERE private_wrapped IS NOT NULL",
            "KEK versions under subject keys": "SELECT DISTINCT k.root_epoch FROM subject_keys s"
            " JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version"
            " WHERE s.wrapped_key IS NOT NULL",
        }
        return {
            what: {row[0] for row in await conn.fetch(query)} for what, query in queries.items()
        }
    finally:
        await conn.close()


def test_new_epoch_under_http_traffic_loses_nothing_and_leaves_nothing_behind(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url) as server, server.client() as http:
        app = bearer(create_key(http, tenant, ["ingest", "read"])["secret"])
        with Traffic(server.base_url, app) as traffic:
            epochs = [_new_epoch(private_vault) for _ in range(EPOCHS)]
        during = (len(traffic.records), len(traffic.artefacts), traffic.reads)
        assert traffic.failures == [], traffic.failures[:10]
        assert epochs == [2, 3, 4]
        assert min(during) > 5, during  # traffic really ran alongside the epochs

        # Afterwards, through a fresh server (no key cache), everything reads back.
        with running_server(private_vault, url) as fresh, fresh.client() as again:
            for path, n in traffic.records.items():
                ref, name = path.split("/")
                got = again.get(f"/v1/subjects/{ref}/records/{name}", headers=app)
                assert got.status_code == 200 and got.json() == {"n": n}
            for artefact_id, (ref, body) in traffic.artefacts.items():
                got = again.get(f"/v1/subjects/{ref}/artefacts/{artefact_id}/content",
                                headers=app)  # fmt: skip
                assert got.status_code == 200 and got.content == body

    wrapped = asyncio.run(_wrapping_epochs(url))
    assert wrapped["tenant KEKs"] == {4}
    assert wrapped["KEK versions under subject keys"] == {4}
    assert wrapped["tenant HMAC keys"] == {4}
    assert wrapped["deployment secrets"] == {4}
    assert wrapped["receipt keys"] == {4}
