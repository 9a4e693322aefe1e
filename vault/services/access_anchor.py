"""Anchors: each access-log chain's head, signed and written to the blob store.

The chain in PostgreSQL proves rows were not changed in between, but someone who can
write the table can cut off its tail or recompute the whole chain. The anchor, kept
outside PostgreSQL and refreshed at least every minute, catches both: the chain must
still contain the anchored row with the anchored hash.

Anchors are signed with the deployment's Ed25519 anchor key (a deployment secret wrapped
by the root key), so anyone holding its public key can check them without a secret that
would also let them forge one. Version 1 anchors, MACed with the older anchor MAC key,
still verify until the next anchor replaces them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from crypto import signing
from crypto.errors import IntegrityError
from crypto.mac import keyed_hash, same_digest
from crypto.secrets import SecretBytes
from vault.blobs.base import BlobNotFound, BlobStore
from vault.db.database import DEPLOYMENT_TENANT, Database
from vault.db.sql import Queries
from vault.services.tenants import list_tenants

Q = Queries("access_log")
log = structlog.get_logger("datavault.access_anchor")

# DESIGN.md: the signed head reaches the blob store at least every minute.
ANCHOR_INTERVAL_SECONDS = 30.0
_FORMAT = "datavault.access-log-anchor"
_SIGNED_VERSION = 2  # Ed25519; version 1 was HMAC-SHA256 under the anchor MAC key
_ALG = "Ed25519"


class AnchorInvalid(Exception):
    """An anchor object exists but does not verify (malformed, forged or altered)."""


@dataclass(frozen=True)
class AnchorKeys:
    """The Ed25519 key that signs anchors, and the MAC key that checks old ones."""

    signing_key: SecretBytes
    legacy_mac_key: SecretBytes

    @property
    def public_key(self) -> bytes:
        return signing.public_key(self.signing_key)

    @property
    def key_id(self) -> str:
        return anchor_key_id(self.public_key)


def anchor_key_id(public_key: bytes) -> str:
    """ "ak-" and the first 16 hex digits of SHA-256(public key)."""
    return "ak-" + hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class Anchor:
    tenant_id: uuid.UUID
    seq: int
    row_hash: bytes
    anchored_at: datetime


def all_chains(tenant_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Every chain: the deployment-wide one, then one per tenant."""
    return [DEPLOYMENT_TENANT, *tenant_ids]


def anchor_key(tenant_id: uuid.UUID) -> str:
    return f"audit-heads/{tenant_id}/latest.json"


def _signed_fields(anchor: Anchor, version: int, key_id: str | None) -> bytes:
    fields: dict[str, Any] = {
        "format": _FORMAT,
        "v": version,
        "tenant_id": str(anchor.tenant_id),
        "seq": anchor.seq,
        "row_hash": anchor.row_hash.hex(),
        "anchored_at": anchor.anchored_at.isoformat(),
    }
    if key_id is not None:
        fields["alg"], fields["key_id"] = _ALG, key_id
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def encode_anchor(anchor: Anchor, keys: AnchorKeys) -> bytes:
    message = _signed_fields(anchor, _SIGNED_VERSION, keys.key_id)
    document = json.loads(message)
    signature = signing.sign(keys.signing_key, message)
    document["signature"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return json.dumps(document, sort_keys=True).encode()


def decode_anchor(data: bytes, keys: AnchorKeys) -> Anchor:
    try:
        document = json.loads(data)
        anchor = Anchor(
            tenant_id=uuid.UUID(document["tenant_id"]),
            seq=int(document["seq"]),
            row_hash=bytes.fromhex(document["row_hash"]),
            anchored_at=datetime.fromisoformat(document["anchored_at"]),
        )
        version = document["v"]
        if document.get("format") != _FORMAT:
            raise ValueError("not an anchor")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AnchorInvalid("anchor is malformed") from exc
    if version == 1:
        _check_mac(document, anchor, keys.legacy_mac_key)
    elif version == _SIGNED_VERSION:
        _check_signature(document, anchor, keys)
    else:
        raise AnchorInvalid(f"anchor version {version!r} is unknown")
    return anchor


def _check_mac(document: dict[str, Any], anchor: Anchor, key: SecretBytes) -> None:
    try:
        mac = bytes.fromhex(document["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorInvalid("anchor is malformed") from exc
    if not same_digest(mac, keyed_hash(key, _signed_fields(anchor, 1, None))):
        raise AnchorInvalid("anchor MAC does not verify")


def _check_signature(document: dict[str, Any], anchor: Anchor, keys: AnchorKeys) -> None:
    text = document.get("signature")
    try:
        if not isinstance(text, str):
            raise ValueError("no signature")
        signature = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error) as exc:
        raise AnchorInvalid("anchor is malformed") from exc
    if document.get("alg") != _ALG or document.get("key_id") != keys.key_id:
        raise AnchorInvalid("anchor is signed by another key")
    try:
        signing.verify(
            keys.public_key, signature, _signed_fields(anchor, _SIGNED_VERSION, keys.key_id)
        )
    except IntegrityError:
        raise AnchorInvalid("anchor signature does not verify") from None


async def read_anchor(blobs: BlobStore, keys: AnchorKeys, tenant_id: uuid.UUID) -> Anchor | None:
    try:
        data = await blobs.get(anchor_key(tenant_id))
    except BlobNotFound:
        return None
    return decode_anchor(data, keys)


async def publish_anchors(
    db: Database,
    blobs: BlobStore,
    keys: AnchorKeys,
    on_refused: Callable[[str], None] = lambda reason: None,
) -> int:
    """Anchor every chain whose head moved past its anchor; return how many were written.

    An anchor only ever moves forward along the same chain. An anchor that does not
    verify, or a chain that no longer holds the anchored row with the anchored hash (its
    tail was cut, or it was rewritten and has since grown past the anchored seq), is left
    as it is: overwriting it would erase the evidence `datavault audit verify` reports.
    Such a chain stays unanchored, logged and counted (`on_refused`), until an operator
    has looked at it and moved the anchor aside (docs/runbook.md)."""
    written = 0
    tenants = [t.id for t in await list_tenants(db)]
    for tenant_id in all_chains(tenants):
        async with db.tenant_tx(tenant_id) as conn:
            head = await conn.fetchrow(Q.get_head, tenant_id)
            try:
                current = await read_anchor(blobs, keys, tenant_id)
            except AnchorInvalid:
                _refuse(tenant_id, "anchor_invalid", on_refused)
                continue
            if head is None or head["seq"] == 0:
                continue
            if current is not None and current.seq >= head["seq"]:
                continue
            if current is not None:
                anchored = await conn.fetchval(Q.row_hash_at, tenant_id, current.seq)
                if anchored is None or not same_digest(bytes(anchored), current.row_hash):
                    _refuse(tenant_id, "chain_contradicts_anchor", on_refused)
                    continue
        anchor = Anchor(tenant_id, head["seq"], bytes(head["row_hash"]), datetime.now(UTC))
        await blobs.put(anchor_key(tenant_id), encode_anchor(anchor, keys))
        written += 1
    return written


def _refuse(tenant_id: uuid.UUID, reason: str, on_refused: Callable[[str], None]) -> None:
    log.error("access_log_anchor_kept", chain=str(tenant_id), reason=reason)
    on_refused(reason)
