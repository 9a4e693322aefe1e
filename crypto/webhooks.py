"""Webhook signing secrets and signatures, as Standard Webhooks defines them
(https://www.standardwebhooks.com; FORMAT.md, "Webhook signatures").

A secret is 32 random bytes, shown to the tenant once as `whsec_` + base64 and stored only
wrapped under the tenant KEK (`wrap_webhook_secret`, purpose `webhook-secret`, bound to
the tenant, the endpoint's id and the KEK version). A delivery is signed with
HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`; the `webhook-signature`
header is `v1,` + base64 of it.
"""

from __future__ import annotations

import base64
from typing import Final

from crypto.context import PURPOSE_WEBHOOK_SECRET, KeyContext
from crypto.keywrap import rewrap_key, unwrap_key, wrap_key
from crypto.mac import keyed_hash
from crypto.secrets import SecretBytes, generate_key

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a label, not a secret)
SIGNATURE_VERSION: Final = "v1"


def webhook_secret_context(tenant_id: str, endpoint_id: str, kek_version: int) -> KeyContext:
    return KeyContext(
        purpose=PURPOSE_WEBHOOK_SECRET,
        tenant_id=tenant_id,
        key_id=endpoint_id,
        version=kek_version,
    )


def new_webhook_secret() -> SecretBytes:
    return generate_key()


def wrap_webhook_secret(kek: SecretBytes, secret: SecretBytes, context: KeyContext) -> bytes:
    return wrap_key(kek, secret, context)


def unwrap_webhook_secret(kek: SecretBytes, wrapped: bytes, context: KeyContext) -> SecretBytes:
    """IntegrityError if it was altered or belongs to another tenant, endpoint or KEK
    version."""
    return unwrap_key(kek, wrapped, context)


def rewrap_webhook_secret(
    old_kek: SecretBytes, new_kek: SecretBytes, wrapped: bytes, old: KeyContext, new: KeyContext
) -> bytes:
    return rewrap_key(old_kek, new_kek, wrapped, old, new)


def display_webhook_secret(secret: SecretBytes) -> str:
    """`whsec_` + base64: what the tenant's receiver configures (shown once)."""
    return SECRET_PREFIX + base64.b64encode(secret.reveal()).decode("ascii")


def sign_webhook(secret: SecretBytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = keyed_hash(secret, signed)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"
