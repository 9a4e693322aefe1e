"""Console sessions, kept server-side in PostgreSQL so any API replica can serve them.

The browser holds only a random token in an HttpOnly cookie; the table holds its SHA-256,
the tenant, the API key's id and the scopes, never the key's secret. Every use re-reads
the key's state, so a revoked or expired key (or a closed tenant) ends its sessions on
the next request, and the key's allowed CIDRs keep applying.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.client_ip import IPAddress
from vault.domain.scopes import Scope
from vault.services.api_keys import Principal
from vault.services.ledger_inline import InlineLedger
from vault.services.ledger_standing import record_session_ended

Q = Queries("console")

# Issue #9: a session lives at most 8 hours, and ends after 30 minutes without a request.
ABSOLUTE_LIFETIME = timedelta(hours=8)
IDLE_LIFETIME = timedelta(minutes=30)
# 256 bits, like the API keys themselves.
TOKEN_BYTES = 32
# A cookie value longer than any token we issue is not looked up at all.
MAX_TOKEN_LENGTH = 64

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _token_hash(token: str) -> bytes:
    # The token is 256 random bits: a plain hash is enough, no pepper is needed.
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


@dataclass(frozen=True)
class ConsoleSession:
    id: uuid.UUID
    principal: Principal
    created_at: datetime
    expires_at: datetime


class SessionStore:
    """`ledger`: publishes a sign-out's shred-ledger entry before the answer, so a
    restored backup does not bring the session back (vault/services/ledger_standing.py)."""

    def __init__(
        self, db: Database, clock: Clock = utc_now, *, ledger: InlineLedger | None = None
    ) -> None:
        self._db = db
        self.clock = clock
        self._ledger = ledger if ledger is not None else InlineLedger(None)

    async def open(self, principal: Principal) -> tuple[str, ConsoleSession]:
        """A new session for a key that was just authenticated: (cookie token, session)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        session_id = uuid.uuid4()
        now = self.clock()
        async with self._db.tenant_tx(principal.tenant_id) as conn:
            await conn.execute(
                Q.insert_session, _token_hash(token), session_id, principal.tenant_id,
                principal.key_id, sorted(s.value for s in principal.scopes), now,
            )  # fmt: skip
        return token, ConsoleSession(session_id, principal, now, now + ABSOLUTE_LIFETIME)

    async def resume(self, token: str, client: IPAddress | None) -> ConsoleSession | None:
        """The live session for a cookie token, touched; None (and deleted if it exists)
        when it expired or its key no longer works."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        now = self.clock()
        async with self._db.untenanted_tx() as conn:
            row = await conn.fetchrow(Q.find_session, _token_hash(token))
        if row is None:
            return None
        tenant_id = row["tenant_id"]
        expired = (
            row["created_at"] + ABSOLUTE_LIFETIME <= now
            or row["last_seen_at"] + IDLE_LIFETIME <= now
            or row["key_revoked_at"] is not None
            or (row["key_expires_at"] is not None and row["key_expires_at"] <= now)
            or row["tenant_status"] == "closed"
        )
        cidrs = row["allowed_cidrs"] or []
        refused_here = bool(cidrs) and (client is None or not any(client in n for n in cidrs))
        async with self._db.tenant_tx(tenant_id) as conn:
            if expired:
                await conn.execute(Q.delete_session, tenant_id, row["id"])
                return None
            if refused_here:
                return None
            await conn.execute(Q.touch_session, tenant_id, row["id"], now)
        principal = Principal(
            tenant_id=tenant_id,
            key_id=row["api_key_id"],
            prefix=row["prefix"],
            scopes=frozenset(Scope(s) for s in row["scopes"]),
        )
        return ConsoleSession(
            row["id"], principal, row["created_at"], row["created_at"] + ABSOLUTE_LIFETIME
        )

    async def close(self, session: ConsoleSession) -> None:
        """Signed out (or replaced by a new sign-in in the same browser): dead for good."""
        tenant_id = session.principal.tenant_id
        async with self._db.tenant_tx(tenant_id) as conn:
            await conn.execute(Q.delete_session, tenant_id, session.id)
            await record_session_ended(conn, tenant_id, session.id)
        await self._ledger.make_durable("sign_out_ledger_entry_deferred", tenant_id=str(tenant_id))

    async def delete_expired(self, tenant_id: uuid.UUID) -> int:
        return await delete_expired_sessions(self._db, tenant_id, self.clock())


async def delete_expired_sessions(db: Database, tenant_id: uuid.UUID, now: datetime) -> int:
    """Sessions nobody will resume: a resume deletes its own, the sweeper the rest."""
    async with db.tenant_tx(tenant_id) as conn:
        status = await conn.execute(
            Q.delete_expired, tenant_id, now - ABSOLUTE_LIFETIME, now - IDLE_LIFETIME
        )
    return int(status.split()[-1])
