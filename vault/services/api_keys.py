"""API keys: create, list, revoke, and authenticate a presented token."""

from __future__ import annotations

import ipaddress
import time
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
    check_owner,
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
# Keys this process verified with a full lookup, remembered by their hash for requests
# whose own statement checks liveness (revocation, tenant closure). Only unchanging parts
# are remembered (tenant, scopes, allowed CIDRs, expiry); the bounds keep memory small and
# send every key through a full lookup at least once a minute.
KNOWN_KEY_SECONDS = 60.0
MAX_KNOWN_KEYS = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: the authenticated key."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    prefix: str
    scopes: frozenset[Scope]
    # Recognised from memory: the request's statement must check that the key is still
    # live before it reads or writes (migration 0011, dv_require_live_key).
    liveness_unchecked: bool = False

    @property
    def key_to_check(self) -> uuid.UUID | None:
        """What request functions take as their key argument (NULL: checked already)."""
        return self.key_id if self.liveness_unchecked else None


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
    owner: str | None
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
        self._known: dict[bytes, tuple[Any, float]] = {}

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
        owner: str | None = None,
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
                owner=owner,
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
        owner: str | None = None,
    ) -> CreatedKey:
        """Create a key inside the caller's tenant transaction. `owner`: the person who
        holds it (required for compliance and admin keys)."""
        if not name.strip() or len(name) > KEY_NAME_MAX_LENGTH:
            raise InvalidInput(f"name must be 1-{KEY_NAME_MAX_LENGTH} characters", field="name")
        owner = check_owner(owner, scopes)
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
                owner,
            )
        except asyncpg.UniqueViolationError:
            # The same secret twice (a tenant reusing its own secret) or a prefix clash.
            raise Conflict("this secret cannot be used; choose another") from None
        return CreatedKey(
            key_id,
            material.prefix,
            name,
            owner,
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
            # Locks every live admin key of the tenant, so two revocations at once cannot
            # both see the other key still there.
            admins = await conn.fetch(Q.live_admin_keys_for_update, tenant_id)
            if [row["id"] for row in admins] == [key_id]:
                raise Conflict(
                    "this is the tenant's last admin key: create another admin key first "
                    "(or ask the operator: datavault api-key create)"
                )
            # Revoking twice is harmless: the key stays revoked.
            revoked = await conn.fetchval(Q.revoke, tenant_id, key_id)
            self.forget(key_id)
            if revoked is None and await conn.fetchval(Q.exists, tenant_id, key_id) is None:
                raise NotFound("no such API key")

    async def authenticate(
        self, token: str, client: IPAddress | None, *, liveness_in_statement: bool = False
    ) -> Principal:
        """Resolve a presented token to a live key, or raise. Every failure reads the same
        to the caller so a guesser learns nothing about which check failed.

        Looked up on every request, so a revocation takes effect at once; except with
        `liveness_in_statement`, where the caller's own statement checks revocation and
        tenant closure (`Principal.key_to_check`) and a key verified here within the last
        minute is recognised from memory."""
        if not token or len(token) > MAX_PRESENTED_LENGTH:
            raise Unauthenticated("invalid API key")
        presented_hash = self._hash(token)
        if liveness_in_statement:
            known = self._known.get(presented_hash)
            if known is not None and known[1] > time.monotonic():
                return self._admit(known[0], client, liveness_unchecked=True)
        row = await self._db.untenanted_fetchrow(Q.find_by_hash, presented_hash)
        if row is None or not same_digest(bytes(row["key_hash"]), presented_hash):
            raise Unauthenticated("invalid API key")
        if row["revoked_at"] is not None or row["tenant_status"] == "closed":
            raise Unauthenticated("invalid API key")
        principal = self._admit(row, client, liveness_unchecked=False)
        if len(self._known) >= MAX_KNOWN_KEYS:
            self._known.clear()
        self._known[presented_hash] = (row, time.monotonic() + KNOWN_KEY_SECONDS)
        return principal

    def forget(self, key_id: uuid.UUID) -> None:
        """Verify `key_id` with a full lookup again from its next use (it was found revoked
        or its tenant closed)."""
        for presented_hash, (row, _) in list(self._known.items()):
            if row["id"] == key_id:
                del self._known[presented_hash]

    @staticmethod
    def _admit(row: Any, client: IPAddress | None, *, liveness_unchecked: bool) -> Principal:
        """The checks on a key's unchanging parts: expiry and allowed CIDRs."""
        if row["expires_at"] and row["expires_at"] <= datetime.now(UTC):
            raise Unauthenticated("invalid API key")
        principal = Principal(
            tenant_id=row["tenant_id"],
            key_id=row["id"],
            prefix=row["prefix"],
            scopes=frozenset(Scope(s) for s in row["scopes"]),
            liveness_unchecked=liveness_unchecked,
        )
        cidrs = row["allowed_cidrs"] or []
        if cidrs and (client is None or not any(client in net for net in cidrs)):
            raise KeyRefusedForAddress(principal)
        return principal
