"""`datavault worker`: the background jobs without the HTTP API.

Any number of workers may run against one deployment: erasures are claimed with
SKIP LOCKED, the ledger publisher serialises on the ledger head, and the other jobs are
idempotent. On SIGTERM a worker cancels its jobs: a job in the middle of a transaction
rolls it back, which releases its claim for the next worker.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from crypto.providers import provider_from_uri
from vault.blobs.factory import open_blob_store
from vault.config import Settings
from vault.db.database import Database
from vault.runtime import prepare_database
from vault.services.deployment_secrets import load_deployment_secrets
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.holds import PgHoldCheck
from vault.services.keyring import KeyRing
from vault.services.ledger import reconcile_on_start
from vault.services.root_epochs import sync_root_epochs
from workers.jobs import background_jobs, root_epochs_job
from workers.runner import JobRunner

log = structlog.get_logger("datavault.worker")


async def run_worker(settings: Settings, url: str) -> None:
    db = await Database.connect(url, max_size=5)
    blobs = open_blob_store(settings)
    try:
        root = provider_from_uri(settings.root_key_uri, settings.data_dir)
        await sync_root_epochs(db, root)
        secrets = await load_deployment_secrets(db, root)
        await reconcile_on_start(db, blobs)
        keyring = KeyRing(root, PgHoldCheck())
        issuer = await ReceiptIssuer.for_deployment(db, root, settings)
        runner = JobRunner(
            [
                root_epochs_job(db, root),
                *background_jobs(db, blobs, keyring, issuer, secrets.anchor_keys, settings),
            ]
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        runner.start()
        log.info("worker_started")
        await stop.wait()
        log.info("worker_stopping")
        await runner.stop()
    finally:
        await blobs.close()
        await db.close()


def worker_main(settings: Settings) -> int:
    url = prepare_database(settings)
    asyncio.run(run_worker(settings, url))
    return 0
