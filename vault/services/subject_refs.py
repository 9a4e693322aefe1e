"""Pseudonymous subject ids: HMAC-SHA256 of the NFC reference under the tenant's key."""

from __future__ import annotations

import asyncio
import time
import uuid

from crypto.mac import keyed_hash
from crypto.providers.base import RootKeyProvider
from crypto.secrets import SecretBytes
from vault.db.database import Database
from vault.db.sql import Queries
from vault.domain.subject_refs import SubjectRef
from vault.errors import NotFound
from vault.services.tenants import hmac_key_context

Q = Queries("tenants")

# DESIGN.md: no process holds a key longer than 60 s; a destroyed key leaves with the TTL.
KEY_CACHE_SECONDS = 60.0


class SubjectRefHasher:
    def __init__(self, db: Database, root: RootKeyProvider) -> None:
        self._db = db
        self._root = root
        self._keys: dict[uuid.UUID, tuple[SecretBytes, float]] = {}

    async def hash(self, tenant_id: uuid.UUID, ref: SubjectRef) -> bytes:
        key = await self._key(tenant_id)
        return keyed_hash(key, ref.reveal().encode("utf-8"))

    async def _key(self, tenant_id: uuid.UUID) -> SecretBytes:
        cached = self._keys.get(tenant_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        async with self._db.tenant_tx(tenant_id) as conn:
            wrapped = await conn.fetchval(Q.hmac_key, tenant_id)
        if wrapped is None:
            self._keys.pop(tenant_id, None)
            raise NotFound("tenant has no subject key")
        key = await asyncio.to_thread(self._root.unwrap, wrapped, hmac_key_context(tenant_id))
        self._keys[tenant_id] = (key, time.monotonic() + KEY_CACHE_SECONDS)
        return key
