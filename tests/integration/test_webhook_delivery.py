"""Webhook delivery, received by a real HTTP server on 127.0.0.1 and verified with the
Standard Webhooks reference library: a receiver that is down for a while gets everything
afterwards in order, the retry schedule driven by a moved clock, give-up and replay,
timeouts, redirects, tampering, key rotation."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.api.helpers import auth
from tests.integration.webhooks_support import (
    Keys,
    deliveries,
    erase,
    no_queue_left_behind,
    place_hold,
    register,
    types,
    vault,
    write,
)
from tests.jobs import run_webhook_pass, run_worker_pass
from tests.support import ServerThread, make_tenant
from tests.webhook_receiver import receiving, silent_listener, tls_contexts, unused_port
from vault.domain.webhooks import (
    ATTEMPTS_SHOWN,
    MAX_ATTEMPTS,
    MAX_RESPONSE_HEAD_BYTES,
    RETRY_DELAYS,
)
from vault.observability.metrics import Metrics
from vault.runtime import operator_context
from vault.services.webhook_sender import WebhookSender
from workers.webhooks import LEASE_SECONDS, deliver_due_webhooks, prune_delivery_log

__all__ = ["no_queue_left_behind", "vault"]  # fixtures


# --- at least once, in order, with backoff ---------------------------------------------


def test_a_receiver_down_for_a_while_gets_every_event_afterwards_in_order_per_erasure(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    port = unused_port()  # nothing listens here yet: the receiver is down
    with vault.client() as http:
        keys = Keys(http, tenant)
        webhook_id, secret = register(http, tenant, f"http://127.0.0.1:{port}/hook")
        for ref in ("subject-a", "subject-b"):
            write(http, keys, ref)
        hold = place_hold(http, keys, "subject-a")
        erasure_a, erasure_b = erase(http, keys, "subject-a"), erase(http, keys, "subject-b")
        run_worker_pass(vault)  # a: held, b: completed
        assert run_webhook_pass(vault) == 0  # refused: connection_failed, backoff begins
        released = http.post(f"/v1/holds/{hold}/release", json={"reason": "paid"},
                             headers=auth(keys.compliance))  # fmt: skip
        assert released.status_code == 200
        run_worker_pass(vault)  # a: completed now
        for hours in (1, 3, 6):  # still down, hours pass
            assert run_webhook_pass(vault, days=hours / 24) == 0
        waiting = deliveries(http, tenant, webhook_id)
        with receiving(port) as receiver:
            assert run_webhook_pass(vault, days=12 / 24) == 4
        log = deliveries(http, tenant, webhook_id)
    assert len(waiting) == 4 and all(d["status"] == "pending" for d in waiting)
    # a's completion waited behind a's held event: never attempted while that was pending;
    # b's was tried at every pass.
    completions = sorted(d["attempt_count"] for d in waiting if d["type"] == "erasure.completed")
    assert completions[0] == 0 and completions[1] >= 3
    got = types(receiver.all(), secret)
    assert sorted(got) == sorted([
        ("erasure.held", erasure_a), ("erasure.completed", erasure_a),
        ("erasure.completed", erasure_b), ("hold.released", hold),
    ])  # fmt: skip
    assert got.index(("erasure.held", erasure_a)) < got.index(("erasure.completed", erasure_a))
    assert all(d["status"] == "delivered" for d in log)
    failed_first = [d for d in log if d["attempt_count"] > 1]
    assert failed_first and all(
        d["attempts"][-1]["outcome"] == "connection_failed" for d in failed_first
    )


def test_the_retry_schedule_runs_over_24_hours_then_gives_up_and_retry_sends_it_again(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        receiver.status = 503
        webhook_id, secret = register(http, tenant, receiver.url())
        queued = http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth()).json()
        elapsed = timedelta(0)
        run_webhook_pass(vault)  # the first attempt
        for attempts, delay in enumerate(RETRY_DELAYS, start=1):
            if delay >= timedelta(minutes=5):  # halfway through the pause: not yet
                run_webhook_pass(vault, days=_days(elapsed + delay / 2))
                assert deliveries(http, tenant, webhook_id)[0]["attempt_count"] == attempts
            elapsed += delay
            run_webhook_pass(vault, days=_days(elapsed + timedelta(seconds=1)))
        [failed] = deliveries(http, tenant, webhook_id)
        run_webhook_pass(vault, days=_days(elapsed) + 1)  # given up: never tried again
        assert deliveries(http, tenant, webhook_id)[0]["attempt_count"] == MAX_ATTEMPTS
        receiver.status = 204
        retried = http.post(f"/v1/webhooks/{webhook_id}/deliveries/{queued['id']}/retry",
                            headers=tenant.auth())  # fmt: skip
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        assert run_webhook_pass(vault) == 1
        [done] = deliveries(http, tenant, webhook_id)
    assert (failed["status"], failed["attempt_count"]) == ("failed", MAX_ATTEMPTS)
    assert [a["response_code"] for a in failed["attempts"]] == [503] * MAX_ATTEMPTS
    times = [datetime.fromisoformat(a["attempted_at"].replace("Z", "+00:00"))
             for a in failed["attempts"]]  # fmt: skip
    assert max(times) - min(times) >= timedelta(hours=24)
    assert (done["status"], done["attempt_count"], done["response_code"]) == (
        "delivered", MAX_ATTEMPTS + 1, 204,
    )  # fmt: skip
    sent = receiver.all()
    assert len(sent) == MAX_ATTEMPTS + 1
    assert {r.headers["webhook-id"] for r in sent} == {queued["event_id"]}  # one message
    assert {r.body for r in sent} == {sent[0].body}
    for item in sent:
        assert item.verified(secret)["type"] == "webhook.test"


def _days(span: timedelta) -> float:
    return span / timedelta(days=1)


def test_a_delivered_message_can_be_replayed_under_its_webhook_id(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, secret = register(http, tenant, receiver.url())
        queued = http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth()).json()
        run_webhook_pass(vault)
        http.post(f"/v1/webhooks/{webhook_id}/deliveries/{queued['id']}/retry",
                  headers=tenant.auth())  # fmt: skip
        run_webhook_pass(vault)
        [delivery] = deliveries(http, tenant, webhook_id)
    first, again = receiver.all()
    assert first.body == again.body
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == queued["event_id"]
    assert again.verified(secret)["type"] == "webhook.test"
    assert delivery["attempt_count"] == 2


def test_a_receiver_that_never_answers_times_out_and_is_retried(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with silent_listener() as port, vault.client() as http:
        webhook_id, _ = register(http, tenant, f"http://127.0.0.1:{port}/hook")
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        quick = WebhookSender(allow_private_networks=True, timeout_seconds=0.5)
        assert run_webhook_pass(vault, sender=quick) == 0
        [delivery] = deliveries(http, tenant, webhook_id)
    assert delivery["status"] == "pending"
    assert delivery["attempts"][0]["outcome"] == "timeout"
    assert delivery["next_attempt_at"] is not None


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        receiver.status = 307
        receiver.headers = {"Location": receiver.url("/elsewhere")}
        webhook_id, _ = register(http, tenant, receiver.url())
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        run_webhook_pass(vault)
        [delivery] = deliveries(http, tenant, webhook_id)
    assert [r.path for r in receiver.all()] == ["/hook"]
    assert (delivery["status"], delivery["response_code"]) == ("pending", 307)
    assert delivery["attempts"][0]["outcome"] == "http_error"


# --- signatures ------------------------------------------------------------------------


def test_a_tampered_body_signature_or_timestamp_and_another_secret_fail_verification(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, secret = register(http, tenant, receiver.url())
        _, other_secret = register(http, tenant, receiver.url("/other"))
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        run_webhook_pass(vault)
    [got] = receiver.at("/hook")
    assert got.verified(secret)["type"] == "webhook.test"
    body = bytearray(got.body)
    body[body.index(b"webhook.test")] ^= 0x01
    signature = got.headers["webhook-signature"]
    flipped = signature[:-3] + ("A" if signature[-3] != "A" else "B") + signature[-2:]
    old = str(int(got.headers["webhook-timestamp"]) - 3600)
    attempts = [
        (bytes(body), got.headers, secret),
        (got.body, {**got.headers, "webhook-signature": flipped}, secret),
        (got.body, {**got.headers, "webhook-id": str(uuid.uuid4())}, secret),
        (got.body, {**got.headers, "webhook-timestamp": old}, secret),
        (got.body, got.headers, other_secret),
    ]
    for data, headers, key in attempts:
        with pytest.raises(WebhookVerificationError):
            Webhook(key).verify(data, headers)


def test_a_wrapped_secret_moved_to_another_endpoint_does_not_open_and_nothing_is_sent(
    vault: ServerThread,
) -> None:
    """Someone with write access to the database copies one endpoint's wrapped secret onto
    another: it is bound to its endpoint's id, so it opens for neither use, and nothing
    goes out signed with the wrong secret."""
    tenant = make_tenant(vault.settings, vault.database_url)
    metrics = Metrics()
    with receiving() as receiver, vault.client() as http:
        victim, _ = register(http, tenant, receiver.url("/victim"))
        source, _ = register(http, tenant, receiver.url("/source"))
        asyncio.run(_copy_secret(vault.database_url, source, victim))
        http.post(f"/v1/webhooks/{victim}/test", headers=tenant.auth())
        assert run_webhook_pass(vault, metrics=metrics) == 0
        [delivery] = deliveries(http, tenant, victim)
    assert receiver.all() == []
    assert delivery["attempts"][0]["outcome"] == "secret_unavailable"
    exposition = metrics.render().decode()
    assert 'datavault_integrity_failures_total{kind="webhook_secret"} 1.0' in exposition


async def _copy_secret(database_url: str, source: str, target: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE webhook_endpoints t SET secret_wrapped = s.secret_wrapped"
            " FROM webhook_endpoints s WHERE s.id = $1 AND t.id = $2",
            uuid.UUID(source), uuid.UUID(target),
        )  # fmt: skip
    finally:
        await conn.close()


def test_after_a_tenants_closure_destroyed_its_keys_nothing_can_be_signed(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        webhook_id, _ = register(http, tenant, f"http://127.0.0.1:{unused_port()}/down")
        closing = http.post("/v1/tenant/closure", json={"reason": "end"}, headers=tenant.auth())
        assert closing.status_code == 202
    run_webhook_pass(vault)  # the receiver is down: retried later
    asyncio.run(_close_for_good(vault))
    run_webhook_pass(vault, days=61)
    outcomes = asyncio.run(_outcomes(vault.database_url, webhook_id))
    assert outcomes == ["connection_failed", "secret_unavailable"]


async def _close_for_good(server: ServerThread) -> None:
    from workers.closure import run_due_closures

    async with operator_context(server.settings, server.database_url) as ctx:
        assert await run_due_closures(ctx.db, ctx.keyring, datetime.now(UTC) + timedelta(days=61))


async def _outcomes(database_url: str, webhook_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.outcome FROM webhook_attempts a JOIN webhook_deliveries d"
            " ON d.tenant_id = a.tenant_id AND d.id = a.delivery_id"
            " WHERE d.endpoint_id = $1 ORDER BY a.seq",
            uuid.UUID(webhook_id),
        )
        return [r["outcome"] for r in rows]
    finally:
        await conn.close()


def test_deliveries_stay_verifiable_after_a_key_rotation(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, secret = register(http, tenant, receiver.url())
        asyncio.run(_rotate(vault, tenant.id))
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        run_webhook_pass(vault)
    [got] = receiver.all()
    assert got.verified(secret)["type"] == "webhook.test"
    assert asyncio.run(_endpoint_kek_version(vault.database_url, webhook_id)) == 2


async def _rotate(server: ServerThread, tenant_id: uuid.UUID) -> None:
    from vault.services.key_rotation import rotate_tenant_kek

    async with operator_context(server.settings, server.database_url) as ctx:
        report = await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant_id)
    assert report.destroyed_versions == (1,)


async def _endpoint_kek_version(database_url: str, webhook_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        version: int = await conn.fetchval(
            "SELECT kek_version FROM webhook_endpoints WHERE id = $1", uuid.UUID(webhook_id)
        )
        return version
    finally:
        await conn.close()


# --- transport: TLS, a worker that dies, two workers, the log's age ------------------------


def test_https_delivery_checks_the_certificate_against_the_url_host(
    vault: ServerThread, tmp_path: Path
) -> None:
    """A certificate for `localhost` only: posting to https://localhost works (the name the
    URL gives is what TLS checks, whichever address answered); https://127.0.0.1 does not."""
    server_tls, client_tls = tls_contexts(tmp_path)
    sender = WebhookSender(allow_private_networks=True, tls=client_tls)
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving(tls=server_tls) as receiver, vault.client() as http:
        by_name, secret = register(http, tenant, receiver.url("/named", host="localhost"))
        by_address, _ = register(http, tenant, receiver.url("/numeric"))
        for webhook_id in (by_name, by_address):
            http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        assert run_webhook_pass(vault, sender=sender) == 1
        [numeric] = deliveries(http, tenant, by_address)
    [got] = receiver.all()
    assert got.path == "/named" and got.verified(secret)["type"] == "webhook.test"
    assert (numeric["status"], numeric["attempts"][0]["outcome"]) == (
        "pending", "connection_failed",
    )  # fmt: skip


class _KilledMidAttempt(Exception):
    """What a worker killed while it posts looks like to the rest of the pass."""


class _DyingSender(WebhookSender):
    async def post(self, url: Any, headers: dict[str, str], body: bytes) -> Any:
        raise _KilledMidAttempt


def test_a_worker_that_dies_mid_attempt_leaves_the_delivery_to_the_next_after_its_lease(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, secret = register(http, tenant, receiver.url())
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        with pytest.raises(_KilledMidAttempt):
            run_webhook_pass(vault, sender=_DyingSender(allow_private_networks=True))
        assert run_webhook_pass(vault) == 0  # still leased to the dead worker
        assert run_webhook_pass(vault, days=_days(timedelta(seconds=LEASE_SECONDS + 5))) == 1
        [delivery] = deliveries(http, tenant, webhook_id)
    [got] = receiver.all()
    assert got.verified(secret)["type"] == "webhook.test"
    assert (delivery["status"], delivery["attempt_count"]) == ("delivered", 1)


def test_two_workers_at_once_deliver_each_message_once(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, _ = register(http, tenant, receiver.url())
        queued = {
            http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth()).json()["event_id"]
            for _ in range(12)
        }
        assert asyncio.run(_two_workers(vault)) == 12
    assert sorted(r.headers["webhook-id"] for r in receiver.all()) == sorted(queued)


async def _two_workers(server: ServerThread) -> int:
    sender = WebhookSender(allow_private_networks=True)
    async with (
        operator_context(server.settings, server.database_url) as one,
        operator_context(server.settings, server.database_url) as other,
    ):
        counts = await asyncio.gather(
            deliver_due_webhooks(one.db, one.keyring, sender),
            deliver_due_webhooks(other.db, other.keyring, sender),
        )
    return sum(counts)


def test_the_delivery_log_keeps_settled_deliveries_30_days_and_pending_ones_always(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        delivered_to, _ = register(http, tenant, receiver.url())
        pending_to, _ = register(http, tenant, f"http://127.0.0.1:{unused_port()}/down")
        for webhook_id in (delivered_to, pending_to):
            http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        run_webhook_pass(vault)
        asyncio.run(_prune(vault, days=29))
        kept = deliveries(http, tenant, delivered_to)
        asyncio.run(_prune(vault, days=31))
        pruned = deliveries(http, tenant, delivered_to)
        waiting = deliveries(http, tenant, pending_to)
    assert [d["status"] for d in kept] == ["delivered"]
    assert pruned == []
    assert [d["status"] for d in waiting] == ["pending"]


async def _prune(server: ServerThread, *, days: float) -> None:
    async with operator_context(server.settings, server.database_url) as ctx:
        await prune_delivery_log(ctx.db, datetime.now(UTC) + timedelta(days=days))


def test_the_log_shows_a_deliverys_newest_20_attempts_and_counts_them_all(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        receiver.status = 500
        webhook_id, _ = register(http, tenant, receiver.url())
        queued = http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth()).json()
        retry = f"/v1/webhooks/{webhook_id}/deliveries/{queued['id']}/retry"
        for _ in range(ATTEMPTS_SHOWN + 1):
            run_webhook_pass(vault)
            http.post(retry, headers=tenant.auth())  # at once, not after the backoff
        [delivery] = deliveries(http, tenant, webhook_id)
    assert delivery["attempt_count"] == ATTEMPTS_SHOWN + 1 == len(receiver.all())
    assert len(delivery["attempts"]) == ATTEMPTS_SHOWN
    times = [a["attempted_at"] for a in delivery["attempts"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert delivery["attempted_at"] == times[0]


@contextmanager
def _answering(head: bytes) -> Iterator[int]:
    """A receiver that reads the request and answers with `head` (status line and
    headers), then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(head + b"\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("header_bytes", "outcome"),
    [
        (MAX_RESPONSE_HEAD_BYTES - 1024, "delivered"),
        (MAX_RESPONSE_HEAD_BYTES + 1024, "protocol_error"),
    ],
)
def test_an_answer_head_past_16_kib_is_not_read(
    vault: ServerThread, header_bytes: int, outcome: str
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Filler: " + b"a" * header_bytes + b"\r\n"
    with _answering(head) as port, vault.client() as http:
        webhook_id, _ = register(http, tenant, f"http://127.0.0.1:{port}/hook")
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        run_webhook_pass(vault)
        [delivery] = deliveries(http, tenant, webhook_id)
    assert delivery["attempts"][0]["outcome"] == outcome
