"""Access-log IP retention: full IPs for 90 days, /24 or /48 until a year, then none; the
hash chain still verifies and the compliance search shows the truncated form."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.api.helpers import auth, create_key
from tests.support import make_tenant, new_database, running_server
from vault.config import Settings
from vault.db.database import DEPLOYMENT_TENANT
from vault.runtime import operator_context
from vault.services.access_log import AccessEntry, AccessLogWriter
from workers.access_log_ips import AgedIps, age_access_log_ips

DAY = timedelta(days=1)


@pytest.fixture
def private_vault(pg_admin_url: str, tmp_path: Path) -> Settings:
    """Its own database: ageing touches every chain, so no other test's rows."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=new_database(pg_admin_url),
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    )


async def _log(settings: Settings, rows: list[tuple[uuid.UUID, str, str, datetime]]) -> None:
    """Write (tenant, request id, ip, at) rows through the real writer and chain."""
    async with operator_context(settings, settings.database_url or "") as ctx:
        writer = AccessLogWriter(ctx.db, ctx.secrets.access_log_ip_key)
        writer.start()
        for tenant_id, request_id, ip, at in rows:
            await writer.record(
                AccessEntry(tenant_id, at, request_id, "GET", "/v1/api-keys", 200, ip=ip)
            )
        await writer.stop()


async def _age(settings: Settings, now: datetime | None = None, batch: int = 5000) -> AgedIps:
    async with operator_context(settings, settings.database_url or "") as ctx:
        return await age_access_log_ips(ctx.db, 90, 365, now=now, batch=batch)


async def _ips(url: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(url)  # the owner: every chain
    try:
        rows = await conn.fetch("SELECT request_id, ip::text AS ip FROM access_log")
        return {r["request_id"]: r["ip"] for r in rows}
    finally:
        await conn.close()


def _audit_verify(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "DATAVAULT_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "vault", "audit", "verify", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_old_ips_are_truncated_then_dropped_and_the_chain_still_verifies(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    now = datetime.now(UTC)
    asyncio.run(
        _log(
            private_vault,
            [
                (tenant.id, "recent", "203.0.113.77", now - 10 * DAY),
                (tenant.id, "v4-old", "203.0.113.77", now - 100 * DAY),
                (tenant.id, "v6-old", "2001:db8:1234:5678::1", now - 100 * DAY),
                (tenant.id, "v4-ancient", "198.51.100.9", now - 400 * DAY),
                (DEPLOYMENT_TENANT, "no-tenant-old", "192.0.2.200", now - 100 * DAY),
            ],
        )
    )
    # Two rows per batch: the job loops until nothing is due.
    assert asyncio.run(_age(private_vault, batch=2)) == AgedIps(truncated=3, dropped=1)
    assert asyncio.run(_age(private_vault)) == AgedIps(0, 0)  # idempotent
    ips = asyncio.run(_ips(url))
    assert ips["recent"] == "203.0.113.77/32"
    assert ips["v4-old"] == "203.0.113.0/24"
    assert ips["v6-old"] == "2001:db8:1234::/48"
    assert ips["no-tenant-old"] == "192.0.2.0/24"
    assert ips["v4-ancient"] is None

    verified = _audit_verify(private_vault)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    with running_server(private_vault, url) as server, server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        items = http.get("/v1/access-log?limit=500", headers=auth(compliance)).json()["items"]
        in_range = http.get("/v1/access-log?ip=203.0.113.0/24", headers=auth(compliance)).json()[
            "items"
        ]
    shown = {item["request_id"]: item["ip"] for item in items}
    assert shown["recent"] == "203.0.113.77"
    assert shown["v4-old"] == "203.0.113.0/24"
    assert shown["v6-old"] == "2001:db8:1234::/48"
    assert shown["v4-ancient"] is None
    assert {i["request_id"] for i in in_range} == {"recent", "v4-old"}


def test_ip_ages_are_counted_to_the_microsecond(private_vault: Settings) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    at = datetime.now(UTC).replace(microsecond=0) - 500 * DAY
    asyncio.run(_log(private_vault, [(tenant.id, "edge", "203.0.113.5", at)]))

    # Exactly 90 days old: still full; one microsecond later: truncated.
    assert asyncio.run(_age(private_vault, now=at + 90 * DAY)) == AgedIps(0, 0)
    tick = timedelta(microseconds=1)
    assert asyncio.run(_age(private_vault, now=at + 90 * DAY + tick)) == AgedIps(1, 0)
    # Exactly 365 days old: still truncated; one microsecond later: dropped.
    assert asyncio.run(_age(private_vault, now=at + 365 * DAY)) == AgedIps(0, 0)
    assert asyncio.run(_age(private_vault, now=at + 365 * DAY + tick)) == AgedIps(0, 1)
    assert asyncio.run(_ips(url))["edge"] is None


def test_the_app_role_cannot_age_ips_into_the_future_or_write_them(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    asyncio.run(_log(private_vault, [(tenant.id, "fresh", "203.0.113.5", datetime.now(UTC))]))

    async def attempts() -> None:
        async with operator_context(private_vault, url) as ctx:
            future = datetime.now(UTC) + DAY
            with pytest.raises(asyncpg.InvalidParameterValueError):
                async with ctx.db.untenanted_tx() as conn:
                    await conn.fetch(
                        "SELECT * FROM dv_age_access_log_ips($1, $2, 10)", future, future
                    )
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with ctx.db.tenant_tx(tenant.id) as conn:
                    await conn.execute("UPDATE access_log SET ip = NULL")

    asyncio.run(attempts())
    assert asyncio.run(_ips(url))["fresh"] == "203.0.113.5/32"
