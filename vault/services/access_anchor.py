"""Anchors: each access-log chain's head, MACed and written to the blob store.

The chain in PostgreSQL proves rows were not changed in between, but someone who can
write the table can cut off its tail or recompute the whole chain. The anchor, kept
outside PostgreSQL and refreshed at least every minute, catches both: the chain must
still contain the anchored row with the anchored hash.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from crypto.mac import keyed_hash, same_digest
from crypto.secrets import SecretBytes
from vault.blobs.base import BlobNotFound, BlobStore
from vault.db.database import DEPLOYMENT_TENANT, Database
from vault.db.sql import Queries
from vault.services.tenants import list_tenants

Q = Queries("access_log")

# DESIGN.md: the signed head reaches the blob store at least every minute.
ANCHOR_INTERVAL_SECONDS = 30.0
_FORMAT = "datavault.access-log-anchor"


class AnchorInvalid(Exception):
    """An anchor object exists but its MAC does not verify."""


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


def _signed_fields(anchor: Anchor) -> bytes:
    fields = {
        "format": _FORMAT,
        "v": 1,
        "tenant_id": str(anchor.tenant_id),
        "seq": anchor.seq,
        "row_hash": anchor.row_hash.hex(),
        "anchored_at": anchor.anchored_at.isoformat(),
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def encode_anchor(anchor: Anchor, key: SecretBytes) -> bytes:
    document = json.loads(_signed_fields(anchor))
    document["mac"] = keyed_hash(key, _signed_fields(anchor)).hex()
    return json.dumps(document, sort_keys=True).encode()


def decode_anchor(data: bytes, key: SecretBytes) -> Anchor:
    try:
        document = json.loads(data)
        anchor = Anchor(
            tenant_id=uuid.UUID(document["tenant_id"]),
            seq=int(document["seq"]),
            row_hash=bytes.fromhex(document["row_hash"]),
            anchored_at=datetime.fromisoformat(document["anchored_at"]),
        )
        mac = bytes.fromhex(document["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorInvalid("anchor is malformed") from exc
    if document.get("format") != _FORMAT or not same_digest(
        mac, keyed_hash(key, _signed_fields(anchor))
    ):
        raise AnchorInvalid("anchor MAC does not verify")
    return anchor


async def read_anchor(blobs: BlobStore, key: SecretBytes, tenant_id: uuid.UUID) -> Anchor | None:
    try:
        data = await blobs.get(anchor_key(tenant_id))
    except BlobNotFound:
        return None
    return decode_anchor(data, key)


async def publish_anchors(db: Database, blobs: BlobStore, key: SecretBytes) -> int:
    """Anchor every chain whose head moved past its anchor; return how many were written."""
    written = 0
    tenants = [t.id for t in await list_tenants(db)]
    for tenant_id in all_chains(tenants):
        async with db.tenant_tx(tenant_id) as conn:
            head = await conn.fetchrow(Q.get_head, tenant_id)
        if head is None or head["seq"] == 0:
            continue
        try:
            current = await read_anchor(blobs, key, tenant_id)
        except AnchorInvalid:
            current = None  # overwrite a damaged anchor with the true head; verify reports it
        if current is not None and current.seq >= head["seq"]:
            continue
        anchor = Anchor(tenant_id, head["seq"], bytes(head["row_hash"]), datetime.now(UTC))
        await blobs.put(anchor_key(tenant_id), encode_anchor(anchor, key))
        written += 1
    return written
