"""Webhook deliveries received by a real HTTP server on 127.0.0.1 and verified with the
Standard Webhooks reference library: every event of the contract, a receiver that is down
for a while, the retry schedule driven by a moved clock, replay, tampering, two tenants,
and a change that rolls back sending nothing. The vault's jobs are off; the tests run the
passes by hand (tests/jobs.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.api.helpers import auth, create_key, put_record, subject_url
from tests.jobs import run_webhook_pass, run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, private_server
from tests.webhook_receiver import Received, receiving, silent_listener, unused_port
from vault.db.database import Database
from vault.domain.erasures import ErasureStatus
from vault.domain.webhooks import MAX_ATTEMPTS, RETRY_DELAYS, EventType
from vault.observability.metrics import Metrics
from vault.services.erasure_transitions import transition
from vault.services.webhook_sender import WebhookSender

ALL_EVENTS = [e.value for e in EventType]


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("webhooks"), webhook_allow_private_networks=True
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_queue_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's pending deliveries end with it: a later test's receiver may get a
    stopped one's port, and must receive only its own test's events."""
    yield
    if "vault" in request.fixturenames:
        server: ServerThread = request.getfixturevalue("vault")
        asyncio.run(_cancel_pending(server.database_url))


async def _cancel_pending(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE webhook_deliveries SET status = 'cancelled' "
                           "WHERE status = 'pending'")  # fmt: skip
    finally:
        await conn.close()


class Keys:
    def __init__(self, http: httpx.Client, tenant: Tenant) -> None:
        self.tenant = tenant
        self.ingest = create_key(http, tenant, ["ingest"])
        self.erasure = create_key(http, tenant, ["erasure"])
        self.compliance = create_key(http, tenant, ["compliance"])


def _register(
    http: httpx.Client, tenant: Tenant, url: str, events: list[str] | None = None
) -> tuple[str, str]:
    """(webhook id, secret)."""
    answered = http.post(
        "/v1/webhooks", json={"url": url, "events": events or ALL_EVENTS}, headers=tenant.auth()
    )
    assert answered.status_code == 201, answered.text
    return answered.json()["id"], answered.json()["secret"]


def _write(http: httpx.Client, keys: Keys, ref: str) -> None:
    answered = put_record(http, keys.ingest, ref, "profile", b'{"plan": "pro"}')
    assert answered.status_code == 201, answered.text


def _erase(http: httpx.Client, keys: Keys, ref: str) -> str:
    answered = http.post(subject_url(ref, "erasure"), headers=auth(keys.erasure))
    assert answered.status_code == 202, answered.text
    erasure_id: str = answered.json()["id"]
    return erasure_id


def _hold(http: httpx.Client, keys: Keys, ref: str, **fields: Any) -> str:
    body = {"subject_ref": ref, "categories": ["account"], "reason": "billing",
            "reference": "case-77", "note": "private note", **fields}  # fmt: skip
    answered = http.post("/v1/holds", json=body, headers=auth(keys.compliance))
    assert answered.status_code == 201, answered.text
    hold_id: str = answered.json()["id"]
    return hold_id


def _deliveries(http: httpx.Client, tenant: Tenant, webhook_id: str) -> list[dict[str, Any]]:
    answered = http.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=tenant.auth())
    assert answered.status_code == 200, answered.text
    items: list[dict[str, Any]] = answered.json()["items"]
    return items


def _types(received: list[Received], secret: str) -> list[tuple[str, str | None]]:
    """(type, erasure or hold id) of each verified delivery, in arrival order."""
    out = []
    for item in received:
        payload = item.verified(secret)
        data = payload["data"]
        out.append((payload["type"], data.get("erasure_id") or data.get("hold_id")))
    return out


def _assert_no_subject_reference(received: list[Received], *refs: str) -> None:
    for item in received:
        text = item.body.decode()
        for ref in refs:
            assert ref not in text
        assert "subject_ref" not in text  # neither the reference nor its hash
        assert set(item.payload) == {"type", "timestamp", "data"}


# --- every event, signed -----------------------------------------------------------------


def test_a_completed_erasure_is_delivered_signed_and_verifies_with_the_library(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "subject-4f1c-completed"
    with receiving() as receiver, vault.client() as http:
        keys = Keys(http, tenant)
        webhook_id, secret = _register(http, tenant, receiver.url(), ["erasure.completed"])
        _write(http, keys, ref)
        erasure_id = _erase(http, keys, ref)
        run_worker_pass(vault)
        assert run_webhook_pass(vault) == 1
        log = _deliveries(http, tenant, webhook_id)
    [got] = receiver.all()
    payload = got.verified(secret)
    assert payload["type"] == "erasure.completed"
    data = payload["data"]
    assert (data["erasure_id"], data["status"], data["tenant_id"]) == (
        erasure_id, "completed", str(tenant.id),
    )  # fmt: skip
    # `identity`: the subject's sealed reference copy, shredded with the rest.
    assert data["shredded"] == ["account", "identity"]
    assert data["held"] == [] and data["retained"] == [] and data["completed_at"]
    assert got.headers["webhook-id"] == log[0]["event_id"]
    assert got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
    _assert_no_subject_reference([got], ref)
    assert (log[0]["status"], log[0]["response_code"], log[0]["attempt_count"]) == (
        "delivered", 200, 1,
    )  # fmt: skip
    assert log[0]["attempts"][0]["outcome"] == "delivered"


def test_held_cancelled_released_expired_and_closure_events_are_delivered(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        keys = Keys(http, tenant)
        _, secret = _register(http, tenant, receiver.url())
        _write(http, keys, "subject-held")
        released = _hold(http, keys, "subject-held")
        held_erasure = _erase(http, keys, "subject-held")
        run_worker_pass(vault)  # held: account is kept
        answered = http.post(f"/v1/holds/{released}/release", json={"reason": "paid"},
                             headers=auth(keys.compliance))  # fmt: skip
        assert answered.status_code == 200, answered.text
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        expiring = _hold(http, keys, "subject-other", expires_at=tomorrow)
        asyncio.run(_expire_now(vault.database_url, expiring))
        asyncio.run(_journal_expired(vault))
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 24},
                   headers=tenant.auth())  # fmt: skip
        _write(http, keys, "subject-cancelled")
        cancelled = _erase(http, keys, "subject-cancelled")
        assert http.post(f"/v1/erasures/{cancelled}/cancel",
                         headers=auth(keys.erasure)).status_code == 200  # fmt: skip
        closure = http.post("/v1/tenant/closure", json={"reason": "contract ended"},
                            headers=tenant.auth())  # fmt: skip
        assert closure.status_code == 202, closure.text
        run_worker_pass(vault)  # the released hold lets the held erasure complete
        run_webhook_pass(vault)
    by_type = {r.verified(secret)["type"]: r.verified(secret)["data"] for r in receiver.all()}
    assert set(by_type) == {
        "erasure.held", "hold.released", "hold.expired", "erasure.cancelled",
        "tenant.closure_scheduled", "erasure.completed",
    }  # fmt: skip
    assert by_type["erasure.held"]["held"] == [{"category": "account", "hold_ids": [released]}]
    assert by_type["erasure.completed"]["erasure_id"] == held_erasure
    assert (by_type["hold.released"]["hold_id"], by_type["hold.released"]["reason"]) == (
        released, "billing",
    )  # fmt: skip
    assert by_type["hold.released"]["released_by"] == keys.compliance["id"]
    assert by_type["hold.expired"]["hold_id"] == expiring
    assert by_type["erasure.cancelled"]["erasure_id"] == cancelled
    assert by_type["tenant.closure_scheduled"]["closure_due_at"] == closure.json()[
        "closure_due_at"
    ].replace("+00:00", "Z")
    # Free text stays home: no case reference, note or release reason in any payload.
    for item in receiver.all():
        for text in ("case-77", "private note", "paid", "contract ended"):
            assert text not in item.body.decode()
    _assert_no_subject_reference(receiver.all(), "subject-held", "subject-cancelled")


async def _expire_now(database_url: str, hold_id: str) -> None:
    """The hold's expiry arrives: as the owner, move it to just past (the expiry journal
    compares with the database's clock)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE holds SET expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(hold_id),
        )
    finally:
        await conn.close()


async def _journal_expired(server: ServerThread) -> None:
    from vault.runtime import operator_context
    from workers.hold_expiry import journal_expired_holds

    async with operator_context(server.settings, server.database_url) as ctx:
        await journal_expired_holds(ctx.db)


def test_an_overdue_erasure_is_announced_once(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        keys = Keys(http, tenant)
        _, secret = _register(http, tenant, receiver.url(), ["erasure.overdue"])
        _write(http, keys, "subject-late")
        erasure_id = _erase(http, keys, "subject-late")  # no executor runs: stays scheduled
        run_webhook_pass(vault, days=25, overdue=True)  # due in 28 to 30 days: not yet
        run_webhook_pass(vault, days=32, overdue=True)
        run_webhook_pass(vault, days=33, overdue=True)  # still overdue: not again
    [got] = receiver.all()
    data = got.verified(secret)["data"]
    assert (got.verified(secret)["type"], data["erasure_id"], data["status"]) == (
        "erasure.overdue", erasure_id, "scheduled",
    )  # fmt: skip


# --- at least once, in order, with backoff ---------------------------------------------


def test_a_receiver_down_for_a_while_gets_every_event_afterwards_in_order_per_erasure(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    port = unused_port()  # nothing listens here yet: the receiver is down
    with vault.client() as http:
        keys = Keys(http, tenant)
        webhook_id, secret = _register(http, tenant, f"http://127.0.0.1:{port}/hook")
        for ref in ("subject-a", "subject-b"):
            _write(http, keys, ref)
        hold = _hold(http, keys, "subject-a")
        erasure_a, erasure_b = _erase(http, keys, "subject-a"), _erase(http, keys, "subject-b")
        run_worker_pass(vault)  # a: held, b: completed
        assert run_webhook_pass(vault) == 0  # refused: connection_failed, backoff begins
        released = http.post(f"/v1/holds/{hold}/release", json={"reason": "paid"},
                             headers=auth(keys.compliance))  # fmt: skip
        assert released.status_code == 200
        run_worker_pass(vault)  # a: completed now
        for hours in (1, 3, 6):  # still down, hours pass
            assert run_webhook_pass(vault, days=hours / 24) == 0
        waiting = _deliveries(http, tenant, webhook_id)
        with receiving(port) as receiver:
            assert run_webhook_pass(vault, days=12 / 24) == 4
        log = _deliveries(http, tenant, webhook_id)
    assert len(waiting) == 4 and all(d["status"] == "pending" for d in waiting)
    # a's completion waited behind a's held event: never attempted while that was pending;
    # b's was tried at every pass.
    completions = sorted(d["attempt_count"] for d in waiting if d["type"] == "erasure.completed")
    assert completions[0] == 0 and completions[1] >= 3
    got = _types(receiver.all(), secret)
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
        webhook_id, secret = _register(http, tenant, receiver.url())
        queued = http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth()).json()
        elapsed = timedelta(0)
        run_webhook_pass(vault)  # the first attempt
        for attempts, delay in enumerate(RETRY_DELAYS, start=1):
            if delay >= timedelta(minutes=5):  # halfway through the pause: not yet
                run_webhook_pass(vault, days=_days(elapsed + delay / 2))
                assert _deliveries(http, tenant, webhook_id)[0]["attempt_count"] == attempts
            elapsed += delay
            run_webhook_pass(vault, days=_days(elapsed + timedelta(seconds=1)))
        [failed] = _deliveries(http, tenant, webhook_id)
        run_webhook_pass(vault, days=_days(elapsed) + 1)  # given up: never tried again
        assert _deliveries(http, tenant, webhook_id)[0]["attempt_count"] == MAX_ATTEMPTS
        receiver.status = 204
        retried = http.post(f"/v1/webhooks/{webhook_id}/deliveries/{queued['id']}/retry",
                            headers=tenant.auth())  # fmt: skip
        assert retried.status_code == 202 and retried.json()["status"] == "pending"
        assert run_webhook_pass(vault) == 1
        [done] = _deliveries(http, tenant, webhook_id)
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
        webhook_id, secret = _register(http, tenant, receiver.url())
        queued = http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth()).json()
        run_webhook_pass(vault)
        http.post(f"/v1/webhooks/{webhook_id}/deliveries/{queued['id']}/retry",
                  headers=tenant.auth())  # fmt: skip
        run_webhook_pass(vault)
        [delivery] = _deliveries(http, tenant, webhook_id)
    first, again = receiver.all()
    assert first.body == again.body
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == queued["event_id"]
    assert again.verified(secret)["type"] == "webhook.test"
    assert delivery["attempt_count"] == 2


def test_a_receiver_that_never_answers_times_out_and_is_retried(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with silent_listener() as port, vault.client() as http:
        webhook_id, _ = _register(http, tenant, f"http://127.0.0.1:{port}/hook")
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        quick = WebhookSender(allow_private_networks=True, timeout_seconds=0.5)
        assert run_webhook_pass(vault, sender=quick) == 0
        [delivery] = _deliveries(http, tenant, webhook_id)
    assert delivery["status"] == "pending"
    assert delivery["attempts"][0]["outcome"] == "timeout"
    assert delivery["next_attempt_at"] is not None


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        receiver.status = 307
        receiver.headers = {"Location": receiver.url("/elsewhere")}
        webhook_id, _ = _register(http, tenant, receiver.url())
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        run_webhook_pass(vault)
        [delivery] = _deliveries(http, tenant, webhook_id)
    assert [r.path for r in receiver.all()] == ["/hook"]
    assert (delivery["status"], delivery["response_code"]) == ("pending", 307)
    assert delivery["attempts"][0]["outcome"] == "http_error"


# --- signatures ------------------------------------------------------------------------


def test_a_tampered_body_signature_or_timestamp_and_another_secret_fail_verification(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, secret = _register(http, tenant, receiver.url())
        _, other_secret = _register(http, tenant, receiver.url("/other"))
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


def test_deliveries_stay_verifiable_after_a_key_rotation(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, secret = _register(http, tenant, receiver.url())
        asyncio.run(_rotate(vault, tenant.id))
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        run_webhook_pass(vault)
    [got] = receiver.all()
    assert got.verified(secret)["type"] == "webhook.test"
    assert asyncio.run(_endpoint_kek_version(vault.database_url, webhook_id)) == 2


async def _rotate(server: ServerThread, tenant_id: uuid.UUID) -> None:
    from vault.runtime import operator_context
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


# --- isolation, deletion, rollback ------------------------------------------------------


def test_two_tenants_never_receive_each_others_events(vault: ServerThread) -> None:
    first = make_tenant(vault.settings, vault.database_url)
    second = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        keys = {t.id: Keys(http, t) for t in (first, second)}
        secrets = {}
        for tenant, path in ((first, "/first"), (second, "/second")):
            _, secrets[path] = _register(http, tenant, receiver.url(path))
        for tenant in (first, second):
            _write(http, keys[tenant.id], "shared-ref")  # the same ref in both tenants
        erasures = {t.id: _erase(http, keys[t.id], "shared-ref") for t in (first, second)}
        http.post("/v1/tenant/closure", json={"reason": "moving"}, headers=second.auth())
        run_worker_pass(vault)
        run_webhook_pass(vault)
    to_first = [r.verified(secrets["/first"]) for r in receiver.at("/first")]
    to_second = [r.verified(secrets["/second"]) for r in receiver.at("/second")]
    assert [(p["type"], p["data"]["erasure_id"]) for p in to_first] == [
        ("erasure.completed", erasures[first.id])
    ]
    assert sorted(p["type"] for p in to_second) == ["erasure.completed", "tenant.closure_scheduled"]
    assert all(p["data"]["tenant_id"] == str(second.id) for p in to_second)
    assert erasures[first.id] not in str(to_second) and str(first.id) not in str(to_second)
    with pytest.raises(WebhookVerificationError):  # one tenant's secret opens nothing of the other
        receiver.at("/first")[0].verified(secrets["/second"])


def test_a_deleted_endpoint_gets_nothing_more(vault: ServerThread) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        webhook_id, _ = _register(http, tenant, receiver.url())
        http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
        assert http.delete(f"/v1/webhooks/{webhook_id}", headers=tenant.auth()).status_code == 204
        assert run_webhook_pass(vault) == 0
    assert receiver.all() == []
    assert asyncio.run(_statuses(vault.database_url, tenant.id)) == ["cancelled"]


async def _statuses(database_url: str, tenant_id: uuid.UUID) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT status FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY created_at",
            tenant_id,
        )
        return [r["status"] for r in rows]
    finally:
        await conn.close()


def test_a_change_that_rolls_back_sends_nothing_and_one_that_commits_sends_its_event(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        keys = Keys(http, tenant)
        _, secret = _register(http, tenant, receiver.url(), ["erasure.cancelled"])
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 24},
                   headers=tenant.auth())  # fmt: skip
        _write(http, keys, "subject-rollback")
        erasure_id = _erase(http, keys, "subject-rollback")
        asyncio.run(_cancel(vault, tenant.id, erasure_id, then_fail=True))
        rolled_back = asyncio.run(_statuses(vault.database_url, tenant.id))
        run_webhook_pass(vault)
        assert receiver.all() == []
        asyncio.run(_cancel(vault, tenant.id, erasure_id, then_fail=False))
        run_webhook_pass(vault)
    assert rolled_back == []
    [got] = receiver.all()
    assert got.verified(secret)["data"]["erasure_id"] == erasure_id


class _AfterTheChange(Exception):
    """Raised inside the transaction, after the status change and its event were written."""


async def _cancel(
    server: ServerThread, tenant_id: uuid.UUID, erasure_id: str, *, then_fail: bool
) -> None:
    db = await Database.connect(server.database_url, max_size=1)
    try:
        async with db.tenant_tx(tenant_id) as conn:
            await transition(
                conn, tenant_id, uuid.UUID(erasure_id), ErasureStatus.SCHEDULED,
                ErasureStatus.CANCELLED,
            )  # fmt: skip
            if then_fail:
                raise _AfterTheChange
    except _AfterTheChange:
        pass
    finally:
        await db.close()


# --- destinations, checked again at delivery ---------------------------------------------


def test_a_name_that_rebinds_to_a_private_address_is_refused_at_delivery(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Registered while hooks.example.com resolved to a public address; at delivery it
    resolves to 127.0.0.1, where a receiver listens: nothing reaches it."""
    from vault.runtime import operator_context
    from vault.services.webhooks import WebhookRequest, WebhookService

    async def public(host: str, port: int) -> list[Any]:
        import ipaddress

        return [ipaddress.ip_address("93.184.216.34")]

    async def rebound(host: str, port: int) -> list[Any]:
        import ipaddress

        return [ipaddress.ip_address("127.0.0.1")]

    with (
        private_server(pg_admin_url, tmp_path_factory.mktemp("rebind")) as strict,
        receiving() as receiver,
    ):
        tenant = make_tenant(strict.settings, strict.database_url)

        async def register() -> str:
            from vault.domain.webhooks import parse_events, parse_webhook_url

            url = parse_webhook_url(
                f"https://hooks.example.com:{receiver.port}/hook", allow_private_networks=False
            )
            async with operator_context(strict.settings, strict.database_url) as ctx:
                service = WebhookService(ctx.db, ctx.keyring, public, allow_private_networks=False)
                created = await service.create(
                    tenant.id, WebhookRequest(url, parse_events(["hold.expired"]), None),
                    uuid.uuid4(),
                )  # fmt: skip
            return str(created.endpoint["id"])

        webhook_id = asyncio.run(register())
        with strict.client() as http:
            http.post(f"/v1/webhooks/{webhook_id}/test", headers=tenant.auth())
            metrics = Metrics()
            sender = WebhookSender(allow_private_networks=False, resolver=rebound)
            assert run_webhook_pass(strict, sender=sender, metrics=metrics) == 0
            [delivery] = _deliveries(http, tenant, webhook_id)
    assert receiver.all() == []
    assert delivery["attempts"][0]["outcome"] == "destination_refused"
    assert delivery["status"] == "pending"  # DNS may change back; the schedule goes on
    exposition = metrics.render().decode()
    assert 'datavault_webhook_attempts_total{outcome="destination_refused"} 1.0' in exposition


def test_a_name_resolving_to_a_private_address_is_refused_at_registration(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from vault.domain.webhooks import parse_events, parse_webhook_url
    from vault.errors import InvalidInput
    from vault.runtime import operator_context
    from vault.services.webhook_sender import ResolutionFailed
    from vault.services.webhooks import WebhookRequest, WebhookService

    answers: dict[str, list[str]] = {
        "inside.example.com": ["10.0.0.7"],
        "mixed.example.com": ["93.184.216.34", "169.254.169.254"],
        "fine.example.com": ["93.184.216.34", "2606:4700::1111"],
    }

    async def resolver(host: str, port: int) -> list[Any]:
        import ipaddress

        if host not in answers:
            raise ResolutionFailed("nxdomain")
        return [ipaddress.ip_address(a) for a in answers[host]]

    async def attempt(server: ServerThread, tenant: Tenant, host: str) -> str | None:
        url = parse_webhook_url(f"https://{host}/hook", allow_private_networks=False)
        async with operator_context(server.settings, server.database_url) as ctx:
            service = WebhookService(ctx.db, ctx.keyring, resolver, allow_private_networks=False)
            try:
                await service.create(
                    tenant.id, WebhookRequest(url, parse_events(["hold.expired"]), None),
                    uuid.uuid4(),
                )  # fmt: skip
            except InvalidInput as refused:
                return refused.detail
        return None

    with private_server(pg_admin_url, tmp_path_factory.mktemp("resolve")) as strict:
        tenant = make_tenant(strict.settings, strict.database_url)
        outcomes = {host: asyncio.run(attempt(strict, tenant, host))
                    for host in (*answers, "nowhere.example.com")}  # fmt: skip
    assert outcomes["fine.example.com"] is None
    for host in ("inside.example.com", "mixed.example.com"):
        assert "private" in (outcomes[host] or ""), host
    assert "does not resolve" in (outcomes["nowhere.example.com"] or "")


# --- what the operator sees ----------------------------------------------------------------


def test_logs_name_ids_only_and_metrics_count_outcomes_and_queue_age(
    vault: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    from vault.observability.logging import configure_logging
    from vault.runtime import operator_context
    from workers.monitor import refresh_gauges

    configure_logging("info")
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "subject-logged-9c2e"
    metrics = Metrics()
    with receiving() as receiver, vault.client() as http:
        keys = Keys(http, tenant)
        token_path = "/in/tok-5a9f0e"
        webhook_id, secret = _register(http, tenant, receiver.url(token_path))
        _write(http, keys, ref)
        _erase(http, keys, ref)
        run_worker_pass(vault)
        receiver.status = 500
        run_webhook_pass(vault, metrics=metrics)

        async def gauges() -> float:
            async with operator_context(vault.settings, vault.database_url) as ctx:
                later = datetime.now(UTC) + timedelta(minutes=10)
                snapshot = await refresh_gauges(ctx.db, metrics, later)
            return snapshot.webhook_queue_age_seconds

        queue_age = asyncio.run(gauges())
        receiver.status = 200
        run_webhook_pass(vault, days=1 / 24, metrics=metrics)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    # The vault's lines, not those of this test's own HTTP client (httpx logs its URLs).
    lines = [line for line in lines if line.get("logger") not in ("httpx", "httpcore")]
    attempts = [line for line in lines if line.get("event") == "webhook_attempt"]
    assert {a["outcome"] for a in attempts} >= {"http_error", "delivered"}
    assert all(a["webhook_id"] == webhook_id for a in attempts if a["tenant_id"] == str(tenant.id))
    everything = json.dumps(lines)
    for leaked in (secret, secret.removeprefix("whsec_"), ref, "tok-5a9f0e"):
        assert leaked not in everything
    exposition = metrics.render().decode()
    assert 'datavault_webhook_attempts_total{outcome="http_error"} 1.0' in exposition
    assert 'datavault_webhook_attempts_total{outcome="delivered"} 1.0' in exposition
    assert queue_age >= 600
