"""Every webhook event of the contract, received by a real HTTP server on 127.0.0.1 and
verified with the Standard Webhooks reference library; payloads with ids only; two tenants;
a deleted endpoint; a change that rolls back sending nothing; what the operator sees."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from tests.api.helpers import auth
from tests.integration.webhooks_support import (
    Keys,
    assert_no_subject_reference,
    deliveries,
    erase,
    no_queue_left_behind,
    place_hold,
    register,
    vault,
    write,
)
from tests.jobs import run_webhook_pass, run_worker_pass
from tests.support import ServerThread, make_tenant
from tests.webhook_receiver import receiving
from vault.db.database import Database
from vault.domain.erasures import ErasureStatus
from vault.observability.metrics import Metrics
from vault.services.erasure_transitions import transition

__all__ = ["no_queue_left_behind", "vault"]  # fixtures


def test_a_completed_erasure_is_delivered_signed_and_verifies_with_the_library(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "subject-4f1c-completed"
    with receiving() as receiver, vault.client() as http:
        keys = Keys(http, tenant)
        webhook_id, secret = register(http, tenant, receiver.url(), ["erasure.completed"])
        write(http, keys, ref)
        erasure_id = erase(http, keys, ref)
        run_worker_pass(vault)
        assert run_webhook_pass(vault) == 1
        log = deliveries(http, tenant, webhook_id)
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
    assert_no_subject_reference([got], ref)
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
        _, secret = register(http, tenant, receiver.url())
        write(http, keys, "subject-held")
        released = place_hold(http, keys, "subject-held")
        held_erasure = erase(http, keys, "subject-held")
        run_worker_pass(vault)  # held: account is kept
        answered = http.post(f"/v1/holds/{released}/release", json={"reason": "paid"},
                             headers=auth(keys.compliance))  # fmt: skip
        assert answered.status_code == 200, answered.text
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        expiring = place_hold(http, keys, "subject-other", expires_at=tomorrow)
        asyncio.run(_expire_now(vault.database_url, expiring))
        asyncio.run(_journal_expired(vault))
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 24},
                   headers=tenant.auth())  # fmt: skip
        write(http, keys, "subject-cancelled")
        cancelled = erase(http, keys, "subject-cancelled")
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
    assert_no_subject_reference(receiver.all(), "subject-held", "subject-cancelled")


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
        _, secret = register(http, tenant, receiver.url(), ["erasure.overdue"])
        write(http, keys, "subject-late")
        erasure_id = erase(http, keys, "subject-late")  # no executor runs: stays scheduled
        run_webhook_pass(vault, days=25, overdue=True)  # due in 28 to 30 days: not yet
        run_webhook_pass(vault, days=32, overdue=True)
        run_webhook_pass(vault, days=33, overdue=True)  # still overdue: not again
    [got] = receiver.all()
    data = got.verified(secret)["data"]
    assert (got.verified(secret)["type"], data["erasure_id"], data["status"]) == (
        "erasure.overdue", erasure_id, "scheduled",
    )  # fmt: skip


# --- isolation, deletion, rollback ------------------------------------------------------


def test_two_tenants_never_receive_each_others_events(vault: ServerThread) -> None:
    first = make_tenant(vault.settings, vault.database_url)
    second = make_tenant(vault.settings, vault.database_url)
    with receiving() as receiver, vault.client() as http:
        keys = {t.id: Keys(http, t) for t in (first, second)}
        secrets = {}
        for tenant, path in ((first, "/first"), (second, "/second")):
            _, secrets[path] = register(http, tenant, receiver.url(path))
        for tenant in (first, second):
            write(http, keys[tenant.id], "shared-ref")  # the same ref in both tenants
        erasures = {t.id: erase(http, keys[t.id], "shared-ref") for t in (first, second)}
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
        webhook_id, _ = register(http, tenant, receiver.url())
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
        _, secret = register(http, tenant, receiver.url(), ["erasure.cancelled"])
        http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 24},
                   headers=tenant.auth())  # fmt: skip
        write(http, keys, "subject-rollback")
        erasure_id = erase(http, keys, "subject-rollback")
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


# --- what the operator sees ----------------------------------------------------------------


def test_logs_name_ids_only_and_metrics_count_outcomes_and_queue_age(
    vault: ServerThread, capsys: pytest.CaptureFixture[str], vault_logging: None
) -> None:
    from vault.runtime import operator_context
    from workers.monitor import refresh_gauges

    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "subject-logged-9c2e"
    metrics = Metrics()
    with receiving() as receiver, vault.client() as http:
        keys = Keys(http, tenant)
        token_path = "/in/tok-5a9f0e"
        webhook_id, secret = register(http, tenant, receiver.url(token_path))
        write(http, keys, ref)
        erase(http, keys, ref)
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
    registered = [line for line in lines if line.get("event") == "webhook_registered"]
    assert [line["webhook_id"] for line in registered] == [webhook_id]
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
