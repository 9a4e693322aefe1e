"""Deployment-wide secrets, created on first start and kept wrapped by the root key.

- the API-key pepper: API keys are stored as HMAC-SHA256 under it, so a copy of the
  database alone cannot test guesses against the stored hashes;
- the access-log IP key: the hash chain covers HMAC(ip key, IP), so IPs can be truncated
  later without breaking the chain, and the chain alone does not reveal them;
- the access-log anchor signing key: an Ed25519 seed; chain heads written to the blob
  store are signed with it, so rewriting the table or cutting off its tail shows against
  the anchored head;
- the access-log anchor MAC key: version 1 anchors were MACed with it; kept so that
  anchors written before signing still verify.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from crypto.context import PURPOSE_DEPLOYMENT_SECRET, KeyContext
from crypto.providers.base import RootKeyProvider
from crypto.secrets import SecretBytes, generate_key
from vault.db.database import Database
from vault.db.sql import Queries
from vault.services.access_anchor import AnchorKeys

Q = Queries("deployment")

API_KEY_PEPPER = "api-key-pepper"
ACCESS_LOG_IP_KEY = "access-log-ip-key"
ACCESS_LOG_ANCHOR_KEY = "access-log-anchor-key"
ACCESS_LOG_ANCHOR_SIGNING_KEY = "access-log-anchor-signing-key"


@dataclass(frozen=True)
class DeploymentSecrets:
    api_key_pepper: SecretBytes
    access_log_ip_key: SecretBytes
    access_log_anchor_key: SecretBytes
    access_log_anchor_signing_key: SecretBytes

    @property
    def anchor_keys(self) -> AnchorKeys:
        return AnchorKeys(self.access_log_anchor_signing_key, self.access_log_anchor_key)


async def load_deployment_secrets(db: Database, root: RootKeyProvider) -> DeploymentSecrets:
    return DeploymentSecrets(
        api_key_pepper=await _load_or_create(db, root, API_KEY_PEPPER),
        access_log_ip_key=await _load_or_create(db, root, ACCESS_LOG_IP_KEY),
        access_log_anchor_key=await _load_or_create(db, root, ACCESS_LOG_ANCHOR_KEY),
        # 32 random bytes are a valid Ed25519 private key (RFC 8032 seed).
        access_log_anchor_signing_key=await _load_or_create(
            db, root, ACCESS_LOG_ANCHOR_SIGNING_KEY
        ),
    )


async def _load_or_create(db: Database, root: RootKeyProvider, name: str) -> SecretBytes:
    context = KeyContext(purpose=PURPOSE_DEPLOYMENT_SECRET, key_id=name)
    async with db.untenanted_tx() as conn:
        row = await conn.fetchrow(Q.get_secret, name)
        if row is None:
            key = generate_key()
            wrapped = await asyncio.to_thread(root.wrap, key, context)
            await conn.execute(Q.insert_secret, name, wrapped, root.current_epoch())
            # Another process may have won the race: whatever is stored now is the secret.
            row = await conn.fetchrow(Q.get_secret, name)
    assert row is not None
    return await asyncio.to_thread(root.unwrap, row["wrapped"], context)
