"""The overdue monitor: an erasure driven past its due_at (by the monitor's injectable
clock, not by waiting 30 days) shows in the overdue gauge and the oldest-open age; the
vault's /metrics exposes every deletion-guarantee gauge from startup."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import (
    auth,
    create_key,
    data_keys,
    parse_time,
    put_record,
    rfc3339,
    wait_for,
)
from tests.support import (
    ServerThread,
    bearer,
    make_tenant,
    private_server,
)
from vault.db.database import Database
from vault.observability.metrics import Metrics
from vault.runtime import operator_context
from vault.services.receipts import ReceiptSigner
from workers.erasure import run_due_erasures
from workers.ledger import complete_published_erasures, publish_pending
from workers.monitor import MonitorSnapshot, refresh_gauges

GAUGES = (
    "datavault_erasures",
    "datavault_erasure_oldest_open_age_seconds",
    "datavault_erasures_overdue",
    "datavault_erasures_rate_braked",
    "datavault_holds_active",
    "datavault_holds_expiring_7d",
    "datavault_keys_destroyed",
    "datavault_ledger_lag_seconds",
    "datavault_worker_job_lag_seconds",
    "datavault_erasures_rate_braked",
    "datavault_root_epoch_age_seconds",
)


def _refresh(database_url: str, metrics: Metrics, now: datetime) -> MonitorSnapshot:
    async def run() -> MonitorSnapshot:
        db = await Database.connect(database_url, max_size=2)
        try:
            return await refresh_gauges(db, metrics, now=now)
        finally:
            await db.close()

    return asyncio.run(run())


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_an_erasure_past_due_at_shows_as_overdue(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On a vault of its own: the gauges count the whole deployment, and on the session's
    vault another test's erasure could cross its due time in the same two seconds."""
    data_dir = tmp_path_factory.mktemp("monitor-overdue") / "data"
    with private_server(pg_admin_url, data_dir) as server:
        _overdue_from_due_at(server)


def _overdue_from_due_at(server: ServerThread) -> None:
    database_url = server.database_url
    tenant = make_tenant(server.settings, database_url)
    with server.client() as http:
        settings = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 48}, headers=tenant.auth()
        )
        assert settings.status_code == 200, settings.text
        privacy = bearer(create_key(http, tenant, ["erasure"])["secret"])
        officer = bearer(create_key(http, tenant, ["compliance"])["secret"])
        requested = http.post("/v1/subjects/olga/erasure", headers=privacy)
        assert requested.status_code == 202, requested.text
        erasure: dict[str, Any] = requested.json()
        hold = http.post(
            "/v1/holds",
            json={
                "reason": "billing",
                "reference": "INV-7",
                "expires_at": rfc3339(datetime.now(UTC) + timedelta(days=3)),
            },
            headers=officer,
        )
        assert hold.status_code == 201, hold.text
    assert erasure["status"] == "scheduled"
    requested_at = parse_time(erasure["requested_at"])
    not_before = parse_time(erasure["not_before"])
    due_at = parse_time(erasure["due_at"])
    assert due_at - requested_at >= timedelta(days=28)  # 30 days or one calendar month

    metrics = Metrics()
    on_time = _refresh(database_url, metrics, requested_at)
    just_before = _refresh(database_url, metrics, due_at - timedelta(seconds=1))
    overdue = _refresh(database_url, metrics, due_at + timedelta(seconds=1))

    # The gauges hold the last refresh, and agree with what it returned.
    assert _sample(metrics, "datavault_erasures_overdue") == overdue.overdue
    assert _sample(metrics, "datavault_erasures", status="scheduled") >= 1
    # This erasure, the vault's only one, is overdue from due_at on.
    assert (on_time.overdue, just_before.overdue, overdue.overdue) == (0, 0, 1)
    # Oldest open: at least this erasure's age, due_at - requested_at (30 days, or one
    # calendar month when that is sooner) plus the second past it.
    age = _sample(metrics, "datavault_erasure_oldest_open_age_seconds")
    assert age >= (due_at - requested_at).total_seconds() + 1 >= timedelta(days=28).total_seconds()
    # Scheduled, due (not_before passed) and unclaimed: the workers lag behind.
    assert (
        _sample(metrics, "datavault_worker_job_lag_seconds")
        >= (due_at - not_before).total_seconds()
    )
    # The hold expires in 3 days: active and expiring within 7 days.
    assert on_time.holds_active >= 1 and on_time.holds_expiring_7d >= 1
    assert _sample(metrics, "datavault_keys_destroyed") >= 0
    assert _sample(metrics, "datavault_ledger_lag_seconds") >= 0


def test_metrics_exposes_the_deletion_guarantee_gauges(server: ServerThread) -> None:
    with server.client() as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    exposed = {
        line.split("{")[0].split(" ")[0]
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }
    for name in GAUGES:
        assert name in exposed, name
    for status in ("scheduled", "in_progress", "completed", "held", "cancelled"):
        assert f'datavault_erasures{{status="{status}"}}' in response.text
    assert "tenant" not in "".join(
        line for line in response.text.splitlines() if line.startswith("datavault_erasures")
    )


def test_the_root_epoch_age_is_gauged(database_url: str) -> None:
    metrics = Metrics()
    now = datetime.now(UTC)
    first = _refresh(database_url, metrics, now)
    # The epoch began when the database was migrated: a day later it is a day older.
    later = _refresh(database_url, metrics, now + timedelta(days=1))
    assert later.root_epoch_age_seconds - first.root_epoch_age_seconds == 86400
    assert _sample(metrics, "datavault_root_epoch_age_seconds") == later.root_epoch_age_seconds


def test_a_held_erasure_is_neither_open_nor_overdue(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A hold keeps part of an erasure by design: the erasure is `held`, counted as such,
    and never raises the overdue or oldest-open gauges (alerts that page someone)."""
    data_dir = tmp_path_factory.mktemp("monitor") / "data"
    with private_server(pg_admin_url, data_dir) as server, server.client() as http:
        settings, url = server.settings, server.database_url
        tenant = make_tenant(settings, url)
        keys = data_keys(http, tenant)
        privacy = create_key(http, tenant, ["erasure"])
        held = http.post(
            "/v1/holds", json={"reason": "litigation", "reference": "CASE-9"},
            headers=auth(keys.compliance),
        )  # fmt: skip
        assert held.status_code == 201, held.text
        assert put_record(http, keys.ingest, "kept", "r", b"{}").status_code == 201
        erasure = http.post("/v1/subjects/kept/erasure", headers=auth(privacy)).json()

        async def execute() -> None:
            async with operator_context(settings, url) as ctx:
                await run_due_erasures(ctx.db, ctx.keyring)
                await publish_pending(
                    ctx.db, ctx.blobs, signer=await ReceiptSigner.load_or_create(ctx.db, ctx.root)
                )
                await complete_published_erasures(ctx.db)

        asyncio.run(execute())
        assert wait_for(
            lambda: (
                http.get(f"/v1/erasures/{erasure['id']}", headers=auth(privacy)).json()["status"]
                == "held"
            ),
            timeout=30,
        )
    past_due = parse_time(erasure["due_at"]) + timedelta(days=1)
    metrics = Metrics()
    snapshot = _refresh(url, metrics, past_due)
    assert _sample(metrics, "datavault_erasures", status="held") == 1
    assert snapshot.overdue == 0 and _sample(metrics, "datavault_erasures_overdue") == 0
    assert _sample(metrics, "datavault_erasure_oldest_open_age_seconds") == 0


def test_an_erasure_in_its_grace_period_is_not_open_until_due(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A tenant's grace period (up to 29 days) keeps an erasure `scheduled` by design: the
    oldest-open gauge (alert: over a day) leaves it out until its not_before, then counts
    its age from the request, so one stuck after a long grace period shows at once."""
    data_dir = tmp_path_factory.mktemp("monitor-grace") / "data"
    with private_server(pg_admin_url, data_dir) as server, server.client() as http:
        url = server.database_url
        tenant = make_tenant(server.settings, url)
        settings = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 72}, headers=tenant.auth()
        )
        assert settings.status_code == 200, settings.text
        privacy = create_key(http, tenant, ["erasure"])
        erasure = http.post("/v1/subjects/greta/erasure", headers=auth(privacy)).json()
    assert erasure["status"] == "scheduled"
    requested_at = parse_time(erasure["requested_at"])
    not_before = parse_time(erasure["not_before"])
    assert not_before - requested_at == timedelta(hours=72)

    metrics = Metrics()
    in_grace = _refresh(url, metrics, not_before - timedelta(seconds=1))
    assert in_grace.erasures["scheduled"] == 1
    # Two days and more since the request, but waiting by the tenant's choice.
    assert in_grace.oldest_open_age_seconds == 0
    assert _sample(metrics, "datavault_erasure_oldest_open_age_seconds") == 0
    due = _refresh(url, metrics, not_before + timedelta(seconds=1))
    assert due.oldest_open_age_seconds == (not_before - requested_at).total_seconds() + 1
    assert _sample(metrics, "datavault_erasure_oldest_open_age_seconds") > 86400
    assert _sample(metrics, "datavault_worker_job_lag_seconds") == 1
