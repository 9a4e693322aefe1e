"""Anchors: each access-log chain's head, signed and kept in the blob store as a history.

The chain in PostgreSQL proves rows were not changed in between, but someone who can
write the table can cut off its tail or recompute the whole chain. An anchor, kept
outside PostgreSQL and written at least every minute, catches both: the chain must still
contain every anchored row with the anchored hash.

One anchor object could be put back: with write access to the table and the bucket,
restore an older anchor and cut the table to match. So every anchor is a new object in a
history that is never overwritten, `audit-heads/<chain>/history/<n>.json` (n from 1,
12 digits so that names sort in number order), locked under S3 Object Lock where the
bucket has it. Each names the one before it (`prev_anchor_seq` and the SHA-256 of its
stored bytes), so the history is a chain of its own, and a new one is written every
round even when the access log did not grow (a heartbeat), so its newest anchor is never
older than a bound (`MAX_ANCHOR_AGE_SECONDS`). Putting back an old anchor then leaves a
newest anchor that is stale, or a gap in the history, and removing or changing one in
the middle breaks a link: `datavault audit verify` reports each.

Since v4 an anchor of a tenant's chain also carries the head of the tenant's disclosure
chain (vault/domain/disclosures.py), read in the same transaction: the same history that
pins the access log pins the disclosures, so a disclosure cut off the end of its chain
is found like an access-log row. (v3 anchors, without it, still verify.)

Anchors are signed with the deployment's Ed25519 anchor key (a deployment secret wrapped
by the root key), so anyone holding its public key can check them. Older single anchors,
`audit-heads/<chain>/latest.json` (v1, HMAC-SHA256 under the older anchor MAC key; v2,
Ed25519), still verify: for a deployment upgrading, that object is anchor 0, the start
of the history, and anchor 1 links to it.

Finding the newest anchor must stay cheap when the history holds tens of thousands of
objects. A listing from a known key is one request whatever came before it, so the
writer lists from the newest anchor it knows: the one it wrote last round, or, in a
process that has just started, the one `audit-heads/<chain>/newest.json` names. That
pointer is overwritten every few anchors and never trusted: it only says where to start
listing (a pointer moved back costs a longer listing, one moved past the end a full
one), and what is found is checked like any anchor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from crypto import signing
from crypto.errors import IntegrityError
from crypto.mac import keyed_hash, same_digest
from crypto.secrets import SecretBytes
from vault.blobs.base import BlobNotFound, BlobStore
from vault.db.database import DEPLOYMENT_TENANT

# DESIGN.md: the signed head reaches the blob store at least every minute.
ANCHOR_INTERVAL_SECONDS = 30.0
# How old the newest anchor may be when `datavault audit verify` runs against a running
# deployment: two rounds may fail (a blob-store hiccup) and the third be late by the time
# a round takes and the clock difference between writer and verifier (the slack).
MAX_ANCHOR_AGE_SECONDS = 3 * ANCHOR_INTERVAL_SECONDS + 30.0

_FORMAT = "datavault.access-log-anchor"
_POINTER_FORMAT = "datavault.access-log-anchor-pointer"
# 4: Ed25519, in a history, with the head of the tenant's disclosure chain; 3 was the
# same without it, 2 a single Ed25519 anchor, 1 HMAC.
_HISTORY_VERSION = 4
_HISTORY_VERSIONS = (3, 4)
_ALG = "Ed25519"
_DIGITS = 12  # 2,880 anchors a day fill 12 digits in about 950,000 years
_READ_AHEAD = 32  # anchors fetched at once while walking a history


class AnchorInvalid(Exception):
    """An anchor object exists but does not verify (malformed, forged or altered), or the
    history does not hold together. Messages name anchor numbers and chains only."""


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
    seq: int  # the chain row anchored (0 with GENESIS: the chain was empty)
    row_hash: bytes
    anchored_at: datetime
    anchor_seq: int = 0  # the place in the history; 0 is a single anchor of v1 or v2
    prev_anchor_seq: int | None = None  # None: the first anchor of its chain
    prev_anchor_sha256: bytes | None = None  # SHA-256 of the previous anchor's bytes
    # Written by `datavault audit reanchor` after an incident was recorded: heads
    # anchored before it need no longer be in the chain, and what verify finds wrong
    # before it is reported as acknowledged.
    reanchored: bool = False
    # The head (seq, row_hash) of the tenant's disclosure chain (vault/domain/
    # disclosures.py) at the same moment: (0, GENESIS) while it is empty, and for the
    # deployment-wide chain, which has none. None in anchors before v4.
    disclosures: tuple[int, bytes] | None = None


@dataclass(frozen=True)
class StoredAnchor:
    anchor: Anchor
    sha256: bytes  # of the stored bytes: what the next anchor links to


def all_chains(tenant_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Every chain: the deployment-wide one, then one per tenant."""
    return [DEPLOYMENT_TENANT, *tenant_ids]


def legacy_anchor_key(tenant_id: uuid.UUID) -> str:
    """Where v1 and v2 kept a chain's single anchor; anchor 0 of its history."""
    return f"audit-heads/{tenant_id}/latest.json"


def history_prefix(tenant_id: uuid.UUID) -> str:
    return f"audit-heads/{tenant_id}/history/"


def history_key(tenant_id: uuid.UUID, anchor_seq: int) -> str:
    return f"{history_prefix(tenant_id)}{anchor_seq:0{_DIGITS}d}.json"


def pointer_key(tenant_id: uuid.UUID) -> str:
    return f"audit-heads/{tenant_id}/newest.json"


def history_number(tenant_id: uuid.UUID, key: str) -> int | None:
    """The anchor number a history key names, or None for any other object."""
    name = key.removeprefix(history_prefix(tenant_id))
    stem = name.removesuffix(".json")
    if name == key or stem == name or len(stem) != _DIGITS or not stem.isdigit():
        return None
    return int(stem) or None


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
    if version in _HISTORY_VERSIONS:
        prev = anchor.prev_anchor_sha256
        fields["anchor_seq"] = anchor.anchor_seq
        fields["prev_anchor_seq"] = anchor.prev_anchor_seq
        fields["prev_anchor_sha256"] = prev.hex() if prev is not None else None
        fields["reanchored"] = anchor.reanchored
    if version == 4:
        assert anchor.disclosures is not None, "checked by encode_anchor"
        fields["disclosures_seq"] = anchor.disclosures[0]
        fields["disclosures_row_hash"] = anchor.disclosures[1].hex()
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def encode_anchor(anchor: Anchor, keys: AnchorKeys) -> bytes:
    """An anchor of the history (v4): the fields as sorted compact JSON, signed."""
    if anchor.anchor_seq < 1:
        raise ValueError("history anchors are numbered from 1")
    if (anchor.prev_anchor_seq is None) != (anchor.prev_anchor_sha256 is None):
        raise ValueError("a link names both the previous anchor and its hash")
    if anchor.disclosures is None:
        raise ValueError("an anchor names the disclosure chain's head too")
    message = _signed_fields(anchor, _HISTORY_VERSION, keys.key_id)
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
        if version in _HISTORY_VERSIONS:
            anchor = _with_link(anchor, document)
        if version == 4:
            anchor = _with_disclosures(anchor, document)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AnchorInvalid("anchor is malformed") from exc
    if version == 1:
        _check_mac(document, anchor, keys.legacy_mac_key)
    elif version in (2, *_HISTORY_VERSIONS):
        _check_signature(document, anchor, version, keys)
    else:
        raise AnchorInvalid(f"anchor version {version!r} is unknown")
    return anchor


def _with_link(anchor: Anchor, document: dict[str, Any]) -> Anchor:
    anchor_seq, prev_seq, prev_hash = (
        document["anchor_seq"], document["prev_anchor_seq"], document["prev_anchor_sha256"]
    )  # fmt: skip
    if not isinstance(anchor_seq, int) or isinstance(anchor_seq, bool) or anchor_seq < 1:
        raise ValueError("bad anchor number")
    if prev_seq is None and prev_hash is None:
        link: tuple[int | None, bytes | None] = (None, None)
    elif prev_seq == anchor_seq - 1 and isinstance(prev_hash, str) and len(prev_hash) == 64:
        link = (prev_seq, bytes.fromhex(prev_hash))
    else:
        raise ValueError("bad link")
    if not isinstance(document["reanchored"], bool):
        raise ValueError("bad flag")
    return Anchor(
        anchor.tenant_id, anchor.seq, anchor.row_hash, anchor.anchored_at,
        anchor_seq, link[0], link[1], document["reanchored"],
    )  # fmt: skip


def _with_disclosures(anchor: Anchor, document: dict[str, Any]) -> Anchor:
    seq, row_hash = document["disclosures_seq"], document["disclosures_row_hash"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("bad disclosure head")
    if not isinstance(row_hash, str) or len(row_hash) != 64:
        raise ValueError("bad disclosure head")
    return replace(anchor, disclosures=(seq, bytes.fromhex(row_hash)))


def _check_mac(document: dict[str, Any], anchor: Anchor, key: SecretBytes) -> None:
    try:
        mac = bytes.fromhex(document["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorInvalid("anchor is malformed") from exc
    if not same_digest(mac, keyed_hash(key, _signed_fields(anchor, 1, None))):
        raise AnchorInvalid("anchor MAC does not verify")


def _check_signature(
    document: dict[str, Any], anchor: Anchor, version: int, keys: AnchorKeys
) -> None:
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
        signing.verify(keys.public_key, signature, _signed_fields(anchor, version, keys.key_id))
    except IntegrityError:
        raise AnchorInvalid("anchor signature does not verify") from None


def decode_stored(
    data: bytes, keys: AnchorKeys, tenant_id: uuid.UUID, anchor_seq: int
) -> StoredAnchor:
    """An anchor read from the place of anchor `anchor_seq` of `tenant_id`'s history: it
    must verify and say it belongs there (a copy of another anchor put in its place
    does not)."""
    anchor = decode_anchor(data, keys)
    if anchor.tenant_id != tenant_id:
        raise AnchorInvalid(f"anchor {anchor_seq} belongs to another chain")
    if anchor.anchor_seq != anchor_seq:
        raise AnchorInvalid(
            f"the object of anchor {anchor_seq} holds anchor {anchor.anchor_seq} (moved)"
        )
    return StoredAnchor(anchor, hashlib.sha256(data).digest())


async def _get(blobs: BlobStore, key: str) -> bytes | None:
    try:
        return await blobs.get(key)
    except BlobNotFound:
        return None


async def read_pointer(blobs: BlobStore, tenant_id: uuid.UUID) -> int:
    """The anchor number the pointer names; 0 when it is absent or unreadable."""
    data = await _get(blobs, pointer_key(tenant_id))
    try:
        document = json.loads(data) if data is not None else {}
        number = document.get("anchor_seq") if document.get("format") == _POINTER_FORMAT else 0
    except (ValueError, AttributeError):
        return 0
    return number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else 0


async def write_pointer(blobs: BlobStore, tenant_id: uuid.UUID, anchor_seq: int) -> None:
    document = {"format": _POINTER_FORMAT, "anchor_seq": anchor_seq}
    await blobs.put(pointer_key(tenant_id), json.dumps(document, sort_keys=True).encode())


async def find_newest(
    blobs: BlobStore, tenant_id: uuid.UUID, start: int = 0
) -> tuple[int, bytes] | None:
    """The newest anchor object of the chain, undecoded: (its number, its bytes), the
    single anchor of v1/v2 being number 0; None when there is none.

    Lists from anchor `start` (one request however long the history) when that anchor
    is there; from the beginning when it is not (a pointer past the end) or is 0."""
    numbers: list[int] = []
    if start > 0:
        numbers = _numbers(
            tenant_id,
            await blobs.list_keys(
                history_prefix(tenant_id), start_after=history_key(tenant_id, start)
            ),
        )
        if not numbers:
            data = await _get(blobs, history_key(tenant_id, start))
            if data is not None:
                return start, data
    if not numbers:
        numbers = _numbers(tenant_id, await blobs.list_keys(history_prefix(tenant_id)))
    for number in sorted(numbers, reverse=True):
        data = await _get(blobs, history_key(tenant_id, number))
        if data is not None:  # gone since the listing: take the one before
            return number, data
    legacy = await _get(blobs, legacy_anchor_key(tenant_id))
    return (0, legacy) if legacy is not None else None


def _numbers(tenant_id: uuid.UUID, keys: list[str]) -> list[int]:
    return [n for n in (history_number(tenant_id, key) for key in keys) if n is not None]


@dataclass(frozen=True)
class HistoryEntry:
    """One place of a history as `walk_history` found it. `stored` is the anchor when it
    verifies; `problem` says what is wrong there (a missing, damaged or unlinked anchor);
    `note` what is odd but harmless."""

    anchor_seq: int
    stored: StoredAnchor | None
    sha256: bytes | None  # of the bytes found there, whether or not they verify
    problem: str | None = None
    note: str | None = None


async def walk_history(
    blobs: BlobStore, keys: AnchorKeys, tenant_id: uuid.UUID
) -> AsyncIterator[HistoryEntry]:
    """Every kept anchor of the chain, oldest first, each checked: its signature, that it
    sits in its own place, and that it links to the one before (number and SHA-256 of
    its bytes). Missing numbers between two kept ones are an entry with a problem.

    The oldest kept anchor's own link is not followed: anchors older than their
    retention are pruned from the start of the history. That loses nothing: the newest
    anchor pins every row before its head through the hash chain; the history exists to
    show that no newer anchor was taken away."""
    previous: HistoryEntry | None = None
    legacy = await _get(blobs, legacy_anchor_key(tenant_id))
    if legacy is not None:
        previous = _entry(legacy, keys, tenant_id, 0, None)
        yield previous
    numbered: list[int] = []
    for key in await blobs.list_keys(history_prefix(tenant_id)):
        number = history_number(tenant_id, key)
        if number is None:
            yield HistoryEntry(0, None, None, "an object in the anchor history is not an anchor")
        else:
            numbered.append(number)
    for start in range(0, len(numbered), _READ_AHEAD):
        batch = numbered[start : start + _READ_AHEAD]
        found = await asyncio.gather(*(_get(blobs, history_key(tenant_id, n)) for n in batch))
        for number, data in zip(batch, found, strict=True):
            if previous is not None and number > previous.anchor_seq + 1:
                missing = _span(previous.anchor_seq + 1, number - 1)
                previous = HistoryEntry(
                    number - 1, None, None, f"{missing} missing from the history"
                )
                yield previous
            if data is None:
                if previous is None:
                    continue  # pruned since the listing: the history starts later
                entry = HistoryEntry(number, None, None, f"anchor {number} is missing")
            else:
                entry = _entry(data, keys, tenant_id, number, previous)
            yield entry
            previous = entry


def _entry(
    data: bytes,
    keys: AnchorKeys,
    tenant_id: uuid.UUID,
    number: int,
    previous: HistoryEntry | None,
) -> HistoryEntry:
    digest = hashlib.sha256(data).digest()
    try:
        stored = decode_stored(data, keys, tenant_id, number)
    except AnchorInvalid as exc:
        text = str(exc)
        problem = text if text.startswith(f"anchor {number} ") else f"anchor {number}: {text}"
        return HistoryEntry(number, None, digest, problem)
    anchor = stored.anchor
    if previous is None:
        if anchor.prev_anchor_seq is None and number > 1:
            return HistoryEntry(
                number, stored, digest, f"anchor {number} names no anchor before it"
            )
        return HistoryEntry(number, stored, digest)
    linked = anchor.prev_anchor_seq == previous.anchor_seq and (
        previous.sha256 is None or anchor.prev_anchor_sha256 == previous.sha256
    )
    if linked:
        return HistoryEntry(number, stored, digest)
    previous_at = previous.stored.anchor.anchored_at if previous.stored else None
    if number == 1 and previous_at is not None and previous_at > anchor.anchored_at:
        # A process of an earlier version, still running during an upgrade, rewrote its
        # single anchor after the history began. Harmless: the history's own anchors
        # decide freshness, and that anchor's head is checked against the chain too.
        return HistoryEntry(
            number, stored, digest,
            note="latest.json was rewritten after the history began (a process of an "
            "earlier version was still anchoring)",
        )  # fmt: skip
    return HistoryEntry(
        number, stored, digest,
        f"anchor {number} does not link to anchor {previous.anchor_seq} (one of them was "
        "changed or replaced)",
    )  # fmt: skip


def _span(first: int, last: int) -> str:
    return f"anchor {first} is" if first == last else f"anchors {first} to {last} are"
