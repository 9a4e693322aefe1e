"""API keys: create, list, revoke, and authenticate a presented token."""

from __future__ import annotations

import ipaddress
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from crypto.mac import keyed_hash, same_digest
from crypto.secrets import SecretBytes
from vault.db.database import Connection, Database
from vault.db.sql import Queries
from vault.domain.api_keys import (
    KEY_NAME_MAX_LENGTH,
    OWN_SECRETS_PER_HOUR,
    OWN_SECRETS_WINDOW_SECONDS,
    check_owner,
    generate_key,
    own_key,
    token_shaped,
)
from vault.domain.client_ip import IPAddress, IPNetwork, in_network
from vault.domain.scopes import Scope
from vault.domain.secret_text import SecretText
from vault.errors import Conflict, Forbidden, InvalidInput, NotFound, Throttled, Unauthenticated
from vault.services.ledger_controls import record_key_revoked

Q = Queries("api_keys")
log = structlog.get_logger("datavault.api_keys")

_CONTEST_MARKER_PREFIX = b"\x00datavault own secret registered twice\x00"
# A clash of the random prefix, or a concurrent registration of one secret, is retried.
_INSERT_ATTEMPTS = 3
MAX_ALLOWED_CIDRS = 50
# Keys this process verified with a full lookup, remembered by their hash for requests
# whose own statement checks liveness (revocation, tenant closure). Only unchanging parts
# are remembered (tenant, scopes, allowed CIDRs, expiry); the bounds keep memory small and
# send every key through a full lookup at least once a minute.
KNOWN_KEY_SECONDS = 60.0
MAX_KNOWN_KEYS = 10_000


class KeyNotLive(Unauthenticated):
    """The genuine secret of a key that was revoked or has expired: answered like any
    invalid key (the caller learns nothing), but carries the key so the attempt is
    logged under its tenant and key id, where the tenant's responders search for it."""

    def __init__(self, key: Principal) -> None:
        super().__init__("invalid API key")
        self.key = key


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

    def _contest_marker(self, token: str) -> bytes:
        """What a second registration of a secret is stored under (insert_own_secret).
        The leading NUL separates it from every lookup hash: no presented token holds a
        NUL (token_shaped), so no token is ever looked up as a marker."""
        return keyed_hash(self._pepper, _CONTEST_MARKER_PREFIX + token.encode("utf-8"))

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
        if own_secret is not None:
            own_key(own_secret)  # the secret's own rules first: 422 before anything else
            await self._admit_own_secret(conn, tenant_id, own_secret)
        key_id = uuid.uuid4()
        for attempt in range(_INSERT_ATTEMPTS):
            material = own_key(own_secret) if own_secret is not None else generate_key()
            token = material.secret.reveal()
            try:
                # A savepoint: a prefix clash or a concurrent registration of the same
                # secret is retried (with a new prefix) rather than failing the request.
                async with conn.transaction():
                    row = await conn.fetchrow(
                        Q.insert_own_secret if material.bring_your_own else Q.insert,
                        key_id, tenant_id, material.prefix, name, self._hash(token),
                        sorted(scope.value for scope in scopes),
                        [str(network) for network in allowed_cidrs],
                        material.bring_your_own, expires_at, created_by, owner,
                        *((self._contest_marker(token), secrets.token_bytes(32))
                          if material.bring_your_own else ()),
                    )  # fmt: skip
            except asyncpg.UniqueViolationError:
                if attempt + 1 == _INSERT_ATTEMPTS:
                    raise Conflict("the key could not be stored; try again") from None
                continue
            assert row is not None
            if material.bring_your_own and not row["sole_holder"]:
                # For the operator only: the secret is now dead for every tenant that
                # holds it. The caller's answer is the same as for any other secret.
                log.warning("own_secret_contested", tenant_id=str(tenant_id), key_id=str(key_id))
            return CreatedKey(
                key_id, material.prefix, name, owner, scopes, tuple(allowed_cidrs), expires_at,
                row["created_at"], material.secret,
            )  # fmt: skip
        raise AssertionError("unreachable")

    async def _admit_own_secret(self, conn: Connection, tenant_id: uuid.UUID, secret: str) -> None:
        """Limit how often a tenant may register own secrets, and refuse one its own keys
        (revoked ones too) have held. Serialised per tenant, so the count holds under
        concurrent requests. Nothing here looks at another tenant's keys."""
        await conn.execute(Q.lock_own_secrets, tenant_id)
        window = await conn.fetchrow(Q.own_secrets_since, tenant_id, OWN_SECRETS_WINDOW_SECONDS)
        assert window is not None
        if window["recent"] >= OWN_SECRETS_PER_HOUR:
            raise Throttled(
                f"at most {OWN_SECRETS_PER_HOUR} own secrets per hour; try again later",
                retry_after=max(1, window["frees_in"] or 1),
            )
        hashes = [self._hash(secret), self._contest_marker(secret)]
        if await conn.fetchval(Q.own_secret_used_here, tenant_id, hashes):
            raise Conflict("a key of this tenant has used this secret; choose another")

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
            if revoked is not None:
                # A restored backup must not bring the key back to life: the shred ledger
                # records the revocation (vault/services/ledger_controls.py).
                await record_key_revoked(conn, tenant_id, key_id, revoked)
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
        if not token_shaped(token):
            raise Unauthenticated("invalid API key")
        presented_hash = self._hash(token)
        if liveness_in_statement:
            known = self._known.get(presented_hash)
            if known is not None and known[1] > time.monotonic():
                return self._admit(known[0], client, liveness_unchecked=True)
        row = await self._db.untenanted_fetchrow(
            Q.find_by_hash, presented_hash, self._contest_marker(token)
        )
        if row is None or not same_digest(bytes(row["key_hash"]), presented_hash):
            raise Unauthenticated("invalid API key")
        if row["tenant_status"] == "closed" or row["contested"]:
            # A closed tenant's chain takes no new rows; a secret two tenants registered
            # must not authenticate as either, nor be logged as either's.
            raise Unauthenticated("invalid API key")
        if row["revoked_at"] is not None:
            raise KeyNotLive(_principal(row, liveness_unchecked=False))
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
        principal = _principal(row, liveness_unchecked=liveness_unchecked)
        if row["expires_at"] and row["expires_at"] <= datetime.now(UTC):
            raise KeyNotLive(principal)
        cidrs = row["allowed_cidrs"] or []
        if cidrs and (client is None or not any(in_network(client, net) for net in cidrs)):
            raise KeyRefusedForAddress(principal)
        return principal


def _principal(row: Any, *, liveness_unchecked: bool) -> Principal:
    """The key a find_by_hash row describes (its secret matched)."""
    return Principal(
        tenant_id=row["tenant_id"],
        key_id=row["id"],
        prefix=row["prefix"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        liveness_unchecked=liveness_unchecked,
    )
