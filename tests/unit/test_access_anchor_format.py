"""The v4 anchor format (vault/services/access_anchor.py): what decodes, what is refused,
v3 anchors still verifying, and the history's key names. No database, no store."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest

from crypto import signing
from crypto.secrets import generate_key
from vault.services.access_anchor import (
    Anchor,
    AnchorInvalid,
    AnchorKeys,
    decode_anchor,
    decode_stored,
    encode_anchor,
    history_key,
    history_number,
    legacy_anchor_key,
    pointer_key,
)

KEYS = AnchorKeys(generate_key(), generate_key())
CHAIN = uuid.UUID("00000000-0000-4000-8000-000000000001")
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _anchor(**changes: object) -> Anchor:
    fields: dict[str, object] = {
        "tenant_id": CHAIN, "seq": 7, "row_hash": bytes(range(32)), "anchored_at": AT,
        "anchor_seq": 3, "prev_anchor_seq": 2, "prev_anchor_sha256": hashlib.sha256(b"2").digest(),
        "disclosures": (4, bytes(range(32, 64))),
    }  # fmt: skip
    fields.update(changes)
    return Anchor(**fields)  # type: ignore[arg-type]


def _resigned(document: dict[str, object]) -> bytes:
    """`document` signed with the deployment's key, as only the vault could."""
    signed = {k: v for k, v in document.items() if k != "signature"}
    message = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    signature = signing.sign(KEYS.signing_key, message)
    document = {**signed, "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()}
    return json.dumps(document, sort_keys=True).encode()


def test_an_anchor_round_trips_with_its_link() -> None:
    anchor = _anchor()
    data = encode_anchor(anchor, KEYS)
    assert decode_anchor(data, KEYS) == anchor
    stored = decode_stored(data, KEYS, CHAIN, 3)
    assert stored.sha256 == hashlib.sha256(data).digest()
    document = json.loads(data)
    assert document["v"] == 4 and document["prev_anchor_sha256"] == hashlib.sha256(b"2").hexdigest()
    assert document["disclosures_seq"] == 4
    assert document["disclosures_row_hash"] == bytes(range(32, 64)).hex()


def test_a_v3_anchor_without_the_disclosure_head_still_verifies() -> None:
    """Anchors written before disclosures existed: signed over the v3 fields, with no
    disclosure head (None, not an empty chain)."""
    document = json.loads(encode_anchor(_anchor(), KEYS))
    for name in ("disclosures_seq", "disclosures_row_hash"):
        del document[name]
    decoded = decode_anchor(_resigned({**document, "v": 3}), KEYS)
    assert decoded == _anchor(disclosures=None)
    with pytest.raises(ValueError, match="disclosure chain"):
        encode_anchor(_anchor(disclosures=None), KEYS)


def test_the_first_anchor_links_to_nothing() -> None:
    first = _anchor(anchor_seq=1, prev_anchor_seq=None, prev_anchor_sha256=None)
    assert decode_anchor(encode_anchor(first, KEYS), KEYS) == first
    with pytest.raises(ValueError):
        encode_anchor(_anchor(prev_anchor_sha256=None), KEYS)
    with pytest.raises(ValueError):
        encode_anchor(_anchor(anchor_seq=0), KEYS)


@pytest.mark.parametrize(
    "change",
    [
        {"prev_anchor_seq": 1},  # a link that skips an anchor
        {"prev_anchor_sha256": "ab"},
        {"anchor_seq": True},
        {"anchor_seq": 0},
        {"reanchored": "yes"},
        {"disclosures_seq": -1},
        {"disclosures_seq": "4"},
        {"disclosures_row_hash": "ab"},
    ],
)
def test_a_signed_anchor_with_an_impossible_link_is_malformed(change: dict[str, object]) -> None:
    document = {**json.loads(encode_anchor(_anchor(), KEYS)), **change}
    with pytest.raises(AnchorInvalid, match="anchor is malformed"):
        decode_anchor(_resigned(document), KEYS)


@pytest.mark.parametrize(
    "change",
    [
        {"prev_anchor_sha256": hashlib.sha256(b"other").hexdigest()},
        {"disclosures_seq": 3},
        {"disclosures_row_hash": "00" * 32},
    ],
)
def test_a_changed_link_or_disclosure_head_breaks_the_signature(change: dict[str, object]) -> None:
    document = {**json.loads(encode_anchor(_anchor(), KEYS)), **change}
    with pytest.raises(AnchorInvalid, match="signature does not verify"):
        decode_anchor(json.dumps(document).encode(), KEYS)


def test_an_anchor_in_another_place_or_chain_is_refused() -> None:
    data = encode_anchor(_anchor(), KEYS)
    with pytest.raises(AnchorInvalid, match=r"the object of anchor 4 holds anchor 3 \(moved\)"):
        decode_stored(data, KEYS, CHAIN, 4)
    with pytest.raises(AnchorInvalid, match="anchor 3 belongs to another chain"):
        decode_stored(data, KEYS, uuid.uuid4(), 3)


def test_history_keys_sort_in_number_order_and_name_only_anchors() -> None:
    keys = [history_key(CHAIN, n) for n in (1, 9, 10, 123456)]
    assert sorted(keys) == keys
    assert keys[2] == f"audit-heads/{CHAIN}/history/000000000010.json"
    assert [history_number(CHAIN, k) for k in keys] == [1, 9, 10, 123456]
    for other in (
        legacy_anchor_key(CHAIN),
        pointer_key(CHAIN),
        history_key(CHAIN, 1).replace(".json", ".txt"),
        f"audit-heads/{CHAIN}/history/12.json",
        f"audit-heads/{CHAIN}/history/000000000000.json",
        history_key(uuid.uuid4(), 1),
    ):
        assert history_number(CHAIN, other) is None
