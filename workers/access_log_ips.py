"""Access-log IP retention: full client IPs for DATAVAULT_ACCESS_LOG_IP_FULL_DAYS, then
truncated to /24 (IPv4) or /48 (IPv6) until DATAVAULT_ACCESS_LOG_IP_KEEP_DAYS, then
dropped (NULL).

The application role may only append to the access log, so the change goes through
`dv_age_access_log_ips` (migration 0008), a SECURITY DEFINER function that can only
lower an IP's precision. The hash chain covers HMAC(ip key, IP), so aged rows still
verify. Batches keep each transaction short; rows locked by another worker are skipped
and picked up on the next round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vault.db.database import Database
from vault.db.sql import Queries

Q = Queries("access_log")

# Ages are counted in days: once an hour keeps every row within an hour of its due time.
IP_RETENTION_INTERVAL_SECONDS = 3600.0
# Rows per transaction: short enough not to hold locks for long on a busy log.
IP_RETENTION_BATCH = 5000


@dataclass(frozen=True)
class AgedIps:
    truncated: int
    dropped: int


async def age_access_log_ips(
    db: Database,
    full_days: int,
    keep_days: int,
    now: datetime | None = None,
    batch: int = IP_RETENTION_BATCH,
) -> AgedIps:
    """Truncate and drop every IP that is due; returns how many rows changed."""
    now = now or datetime.now(UTC)
    full_before = now - timedelta(days=full_days)
    drop_before = now - timedelta(days=keep_days)
    truncated = dropped = 0
    while True:
        async with db.untenanted_tx() as conn:
            row = await conn.fetchrow(Q.age_ips, full_before, drop_before, batch)
        assert row is not None
        truncated += row["truncated"]
        dropped += row["dropped"]
        if row["truncated"] < batch and row["dropped"] < batch:
            return AgedIps(truncated, dropped)
