"""Webhook benchmark: what the outbox adds to erasure completion, and delivery throughput.

    python bench/webhook_bench.py [--erasures 100] [--rounds 3] [--deliveries 500]

- outbox: completing `--erasures` erasures at once (the shred-ledger publisher's
  `complete_published_erasures`, where `erasure.completed` is written), for a tenant
  without webhooks (one indexed read per erasure: is anyone subscribed?) and for one with
  an endpoint subscribed (the payload read back and the event with its delivery inserted,
  in the same transaction);
- delivery: `--deliveries` queued events posted by one worker pass to a receiver on
  127.0.0.1 that answers 204 at once (signing, HTTP/1.1 over a fresh connection each,
  the attempt recorded), 16 in flight.

Runs against its own PostgreSQL (DATABASE_URL as a superuser URL: a new database is
created there; otherwise the embedded server in a temporary directory).

Measured 6 December 2026 on 2 cores shared with other test suites (load average 12-14,
so compare within a run; embedded PostgreSQL; the receiver a thread of this process),
medians of 3 rounds: 100 erasures completed in 825-1,480 ms without webhooks and
1,130-1,290 ms with one subscribed endpoint (run-to-run noise is larger than the
difference; by construction the outbox adds one indexed read per completed erasure for a
tenant without webhooks, three statements with one); 500 deliveries in 5.6-7.9 s
(63-90/s, one JSON log line each; the sender alone reaches ~180/s on that machine).
A receiver with http.server's default backlog of 5 made that 21/s: SYNs dropped under 16
parallel connects wait a second for their retry.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from epoch_bench import database_url

from vault.config import Settings
from vault.db.database import Database
from vault.db.migrate import migrate
from vault.domain.subject_refs import normalize_ref
from vault.domain.webhooks import EventType, parse_webhook_url
from vault.runtime import OperatorContext, operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from vault.services.erasures import ErasureRequest, ErasureService
from vault.services.receipts import ReceiptSigner
from vault.services.subject_refs import SubjectRefHasher
from vault.services.subjects import SubjectService
from vault.services.tenants import create_tenant
from vault.services.webhook_outbox import emit_test
from vault.services.webhook_sender import WebhookSender, resolve_host
from vault.services.webhooks import WebhookRequest, WebhookService
from workers.erasure import run_due_erasures
from workers.ledger import complete_published_erasures, publish_pending
from workers.webhooks import deliver_due_webhooks


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # http.server's backlog of 5 drops SYNs under 16 parallel connects (each then waits
    # the 1 s SYN retry): a receiver in production listens with a longer one.
    request_queue_size = 128


async def _tenant(ctx: OperatorContext, slug: str) -> tuple[uuid.UUID, uuid.UUID]:
    tenant = await create_tenant(ctx.db, ctx.root, ctx.api_keys, slug)
    async with ctx.db.tenant_tx(tenant.id) as conn:
        api_key_id = await conn.fetchval("SELECT id FROM api_keys LIMIT 1")
    return tenant.id, api_key_id


async def _complete(ctx: OperatorContext, tenant_id: uuid.UUID, api_key_id: uuid.UUID,
                    size: int, issuer: ReceiptIssuer, tag: str) -> float:  # fmt: skip
    hasher = SubjectRefHasher(ctx.db, ctx.root)
    subjects = SubjectService(ctx.keyring, hasher)
    erasures = ErasureService(ctx.db, hasher)
    refs = [f"{tag}-{i}" for i in range(size)]
    for ref in refs:
        text = normalize_ref(ref)
        ref_hash = await subjects.ref_hash(tenant_id, text)
        async with ctx.db.tenant_tx(tenant_id) as conn:
            subject = await subjects.find_or_create(conn, tenant_id, text, ref_hash)
            await ctx.keyring.subject_key_for_write(
                conn, tenant_id, subject.id, "account", subject.generation
            )
        await erasures.request(tenant_id, text, ErasureRequest(None, None), api_key_id)
    await run_due_erasures(ctx.db, ctx.keyring)
    await publish_pending(
        ctx.db, ctx.blobs, signer=await ReceiptSigner.load_or_create(ctx.db, ctx.root)
    )
    t0 = time.perf_counter()
    assert len(await complete_published_erasures(ctx.db, issuer)) == size
    return time.perf_counter() - t0


async def run(settings: Settings, url: str, size: int, rounds: int, deliveries: int) -> None:
    server = _Server(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        async with operator_context(settings, url) as ctx:
            issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, settings)
            plain = await _tenant(ctx, "bench-plain")
            hooked = await _tenant(ctx, "bench-hooked")
            service = WebhookService(ctx.db, ctx.keyring, resolve_host,
                                     allow_private_networks=True)  # fmt: skip
            endpoint = await service.create(
                hooked[0],
                WebhookRequest(parse_webhook_url(receiver, allow_private_networks=True),
                               (EventType.ERASURE_COMPLETED,), None),
                hooked[1],
            )  # fmt: skip
            without, with_hook = [], []
            for n in range(rounds):
                without.append(await _complete(ctx, *plain, size, issuer, f"p{n}"))
                with_hook.append(await _complete(ctx, *hooked, size, issuer, f"h{n}"))
            print(f"complete {size} erasures: without webhooks "
                  f"{statistics.median(without) * 1e3:.0f} ms, with one subscribed endpoint "
                  f"{statistics.median(with_hook) * 1e3:.0f} ms")  # fmt: skip
            sender = WebhookSender(allow_private_networks=True)
            # A worker's pool (DATAVAULT_DB_POOL_MAX), not the operator commands' two.
            worker_db = await Database.connect(url, max_size=settings.db_pool_max)
            await deliver_due_webhooks(worker_db, ctx.keyring, sender)  # the erasures' events
            async with ctx.db.tenant_tx(hooked[0]) as conn:
                now = datetime.now(UTC)
                for _ in range(deliveries):
                    await emit_test(conn, hooked[0], endpoint.endpoint["id"], now)
            t0 = time.perf_counter()
            delivered = await deliver_due_webhooks(worker_db, ctx.keyring, sender)
            seconds = time.perf_counter() - t0
            await worker_db.close()
            print(f"{delivered} deliveries in {seconds:.2f} s ({delivered / seconds:.0f}/s)")
    finally:
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--erasures", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="datavault-webhook-bench-") as tmp:
        workdir = Path(tmp)
        url = database_url(workdir)
        asyncio.run(migrate(url))
        settings = Settings(data_dir=workdir / "data", database_url=url)
        asyncio.run(run(settings, url, args.erasures, args.rounds, args.deliveries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
