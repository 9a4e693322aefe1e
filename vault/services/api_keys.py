"""API keys: create, list, revoke, and authenticate a presented token."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from crypto.mac import keyed_hash, same_digest
from crypto.secrets import SecretBytes
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.api_keys import (
    KEY_NAME_MAX_LENGTH,
    OWN_SECRET_MAX_LENGTH,
    NewKeyMaterial,
    generate_key,
    own_key,
)
from vault.domain.client_ip import IPAddress, IPNetwork
from vault.domain.scopes import Scope
from vault.domain.secret_text import SecretText
from vault.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

Q = Queries("api_keys")

# A presented token longer than any key we issue or accept is rejected before hashing.
MAX_PRESENTED_LENGTH = OWN_SECRET_MAX_LENGTH
MAX_ALLOWED_CIDRS = 50


@dataclass(frozen=True)
class Principal:
    """Who is calling: the authenticated key."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    prefix: str
    scopes: frozenset[Scope]


class KeyRefusedForAddress(Forbidden):
    """A live key used from outside its allowed CIDRs; carries the key for the access log."""

    def __init__(self, key: Principal) -> None:
        super().__init__("this API key may not be used from this address")
        self.key = key


@dataclass(frozen=True)
class CreatedKey:
    id: uuid.UUID
    prefix: str
    name: str
    scopes: frozenset[Scope]
    allowed_cidrs: tuple[IPNetwork, ...]
    expires_at: datetime | None
    created_at: datetime
    token: SecretText


def parse_cidrs(values: Iterable[object]) -> tuple[IPNetwork, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise InvalidInput(
                f"allowed_cidrs: {value!r} is not an IP network", field="allowed_cidrs"
            ) from None
    if len(networks) > MAX_ALLOWED_CIDRS:
        raise InvalidInput(
            f"allowed_cidrs: at most {MAX_ALLOWED_CIDRS} networks", field="allowed_cidrs"
        )
    return tuple(networks)


class ApiKeyService:
    def __init__(self, db: Database, pepper: SecretBytes) -> None:
        self._db = db
        self._pepper = pepper

    def _hash(self, token: str) -> bytes:
        return keyed_hash(self._pepper, token.encode("utf-8"))

    async def create(
        self,
        tenant_id: uuid.UUID,
        *,
        name: str,
        scopes: frozenset[Scope],
        allowed_cidrs: Sequence[IPNetwork] = (),
        expires_at: datetime | None = None,
        own_secret: str | None = None,
        created_by: uuid.UUID | None = None,
    ) -> CreatedKey:
        async with self._db.tenant_tx(tenant_id) as conn:
            return await self.create_in(
                conn,
                tenant_id,
                name=name,
                scopes=scopes,
                allowed_cidrs=allowed_cidrs,
                expires_at=expires_at,
                own_secret=own_secret,
                created_by=created_by,
            )

    async def create_in(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        *,
        name: str,
        scopes: frozenset[Scope],
        allowed_cidrs: Sequence[IPNetwork] = (),
        expires_at: datetime | None = None,
        own_secret: str | None = None,
        created_by: uuid.UUID | None = None,
    ) -> CreatedKey:
        """Create a key inside the caller's tenant transaction."""
        if not name.strip() or len(name) > KEY_NAME_MAX_LENGTH:
            raise InvalidInput(f"name must be 1-{KEY_NAME_MAX_LENGTH} characters", field="name")
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at must be in the future", field="expires_at")
        material: NewKeyMaterial = own_key(own_secret) if own_secret is not None else generate_key()
        key_id = uuid.uuid4()
        try:
            created_at = await conn.fetchval(
                Q.insert,
                key_id,
                tenant_id,
                material.prefix,
                name,
                self._hash(material.secret.reveal()),
                sorted(scope.value for scope in scopes),
                [str(network) for network in allowed_cidrs],
                material.bring_your_own,
                expires_at,
                created_by,
            )
        except asyncpg.UniqueViolationError:
            # The same secret twice (a tenant reusing its own secret) or a prefix clash.
            raise Conflict("this secret cannot be used; choose another") from None
        return CreatedKey(
            key_id,
            material.prefix,
            name,
            scopes,
            tuple(allowed_cidrs),
            expires_at,
            created_at,
            material.secret,
        )

    async def list(self, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self._db.tenant_tx(tenant_id) as conn:
            rows = await conn.fetch(Q.list, tenant_id)
        return [dict(row) for row in rows]

    async def revoke(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        async with self._db.tenant_tx(tenant_id) as conn:
            # Revoking twice is harmless: the key stays revoked.
            revoked = await conn.fetchval(Q.revoke, tenant_id, key_id)
            if revoked is None and await conn.fetchval(Q.exists, tenant_id, key_id) is None:
                raise NotFound("no such API key")

    async def authenticate(self, token: str, client: IPAddress | None) -> Principal:
        """Resolve a presented token to a live key, or raise. Every failure reads the same
        to the caller so a guesser learns nothing about which check failed."""
        if not token or len(token) > MAX_PRESENTED_LENGTH:
            raise Unauthenticated("invalid API key")
        presented_hash = self._hash(token)
        # Looked up on every request, never cached: revocation takes effect at once.
        row = await self._db.untenanted_fetchrow(Q.find_by_hash, presented_hash)
        if row is None or not same_digest(bytes(row["key_hash"]), presented_hash):
            raise Unauthenticated("invalid API key")
        now = datetime.now(UTC)
        if row["revoked_at"] is not None or (row["expires_at"] and row["expires_at"] <= now):
            raise Unauthenticated("invalid API key")
        if row["tenant_status"] == "closed":
            raise Unauthenticated("invalid API key")
        principal = Principal(
            tenant_id=row["tenant_id"],
            key_id=row["id"],
            prefix=row["prefix"],
            scopes=frozenset(Scope(s) for s in row["scopes"]),
        )
        cidrs = row["allowed_cidrs"] or []
        if cidrs and (client is None or not any(client in net for net in cidrs)):
            raise KeyRefusedForAddress(principal)
        return principal
