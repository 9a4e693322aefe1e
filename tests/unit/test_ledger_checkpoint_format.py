"""Shred-ledger checkpoints: what one states, and every way a forged, changed, moved or
overreaching checkpoint is refused (one error type, LedgerError)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crypto import signing
from vault.domain.ledger_folding import FoldBound
from vault.services.ledger_checkpoint import (
    Checkpoint,
    FoldedRun,
    checkpoint_key,
    decode_checkpoint,
    encode_checkpoint,
)
from vault.services.ledger_objects import GENESIS, LedgerError
from vault.services.receipt_verify import ReceiptInvalid, verify_signed_receipt
from vault.services.receipts import ReceiptSigner, jwk, key_id_for, sign_statement

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
BOUND = FoldBound(
    epoch=2,
    through_seq=10,
    older_retired_by=NOW - timedelta(days=1),
    destroyed_before=NOW - timedelta(days=35),
    backup_retention_days=35,
    kms_deletion_window_days=0,
)
HASHES = [hashlib.sha256(bytes([n])).digest() for n in range(1, 11)]


KEY = signing.generate_signing_key()
KID = key_id_for(signing.public_key(KEY))
SIGNER = ReceiptSigner(KID, KEY)
JWKS = {"keys": [jwk(KID, signing.public_key(KEY))]}


def _run(after: int = 0, count: int = 10) -> FoldedRun:
    return FoldedRun(
        after_seq=after,
        after_head=GENESIS if after == 0 else HASHES[after - 1],
        object_hashes=HASHES[after : after + count],
        entries=3 * count,
        newest_destroyed_at=NOW - timedelta(days=60),
    )


def _encoded(run: FoldedRun | None = None, previous: Checkpoint | None = None) -> bytes:
    return encode_checkpoint(run or _run(), BOUND, previous, SIGNER, "https://vault.test", NOW)


def _resigned(data: bytes, change: Any) -> bytes:
    """The checkpoint with its statement changed and signed again with the real key, as a
    bug or a stolen receipt key would write it."""
    statement = json.loads(data)["checkpoint"]
    change(statement)
    document = sign_statement(KEY, KID, "checkpoint", statement)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_a_checkpoint_names_every_folded_object_and_the_head_it_ends_at() -> None:
    data = _encoded()
    checkpoint = decode_checkpoint(data, JWKS, checkpoint_key(10))
    assert (checkpoint.after_seq, checkpoint.through_seq) == (0, 10)
    assert checkpoint.after_head == GENESIS and checkpoint.through_head == HASHES[-1]
    assert [checkpoint.hash_at(seq) for seq in range(1, 11)] == HASHES
    assert checkpoint.hash_at(0) is None and checkpoint.hash_at(11) is None
    assert checkpoint.entries == 30 and checkpoint.sha256 == hashlib.sha256(data).digest()
    statement = json.loads(data)["checkpoint"]
    assert statement["type"] == "datavault.shred-ledger-checkpoint"
    assert statement["rule"]["ledger_seq_at_epoch_start"] == 10
    assert "key_id" not in json.dumps(statement)  # no destroyed key id is kept


def test_a_later_checkpoint_continues_from_the_one_before() -> None:
    first = decode_checkpoint(_encoded(_run(0, 4)), JWKS, checkpoint_key(4))
    data = _encoded(_run(4, 6), previous=first)
    second = decode_checkpoint(data, JWKS, checkpoint_key(10))
    assert second.previous == first.sha256 and second.after_head == first.through_head
    assert second.hash_at(5) == HASHES[4] and second.hash_at(4) is None


def test_a_changed_byte_or_another_signer_does_not_verify() -> None:
    data = _encoded()
    document = json.loads(data)
    document["checkpoint"]["entries"] = 1
    changed = json.dumps(document).encode()
    with pytest.raises(LedgerError, match="does not verify"):
        decode_checkpoint(changed, JWKS, checkpoint_key(10))
    stranger = signing.generate_signing_key()
    other = ReceiptSigner(key_id_for(signing.public_key(stranger)), stranger)
    forged = encode_checkpoint(_run(), BOUND, None, other, "https://vault.test", NOW)
    with pytest.raises(LedgerError, match="does not verify"):
        decode_checkpoint(forged, JWKS, checkpoint_key(10))
    with pytest.raises(LedgerError, match="does not verify"):
        decode_checkpoint(b"not json", JWKS, checkpoint_key(10))


def test_a_checkpoint_moved_to_another_name_is_refused() -> None:
    with pytest.raises(LedgerError, match="malformed"):
        decode_checkpoint(_encoded(), JWKS, checkpoint_key(11))


def test_a_checkpoint_whose_hashes_do_not_end_at_its_head_is_refused() -> None:
    def shorten(statement: dict[str, Any]) -> None:
        statement["through"]["seq"] = 9

    with pytest.raises(LedgerError, match="malformed"):
        decode_checkpoint(_resigned(_encoded(), shorten), JWKS, checkpoint_key(9))


def test_a_signed_checkpoint_folding_what_its_own_rule_keeps_is_refused() -> None:
    """Even with the real key: past the head its epoch began at, an entry destroyed
    within the retention, or older epochs retired after it was written."""

    def past_the_epoch(statement: dict[str, Any]) -> None:
        statement["rule"]["ledger_seq_at_epoch_start"] = 9

    def too_recent(statement: dict[str, Any]) -> None:
        statement["newest_destroyed_at"] = "2027-02-01T00:00:00Z"

    def not_retired(statement: dict[str, Any]) -> None:
        statement["rule"]["older_epochs_retired_by"] = "2027-03-02T00:00:00Z"

    for change in (past_the_epoch, too_recent, not_retired):
        with pytest.raises(LedgerError, match="its own rule still keeps"):
            decode_checkpoint(_resigned(_encoded(), change), JWKS, checkpoint_key(10))


def test_a_checkpoint_cannot_fold_past_its_bound_when_written() -> None:
    with pytest.raises(ValueError, match="none past its rule"):
        encode_checkpoint(_run(), replace(BOUND, through_seq=9), None, SIGNER, "x", NOW)


def test_a_checkpoint_never_passes_for_a_receipt_nor_a_receipt_for_a_checkpoint() -> None:
    """One key signs both; each statement names its type inside what is signed."""
    document = json.loads(_encoded())
    as_receipt = {**document, "receipt": document.pop("checkpoint")}
    with pytest.raises(ReceiptInvalid, match="not a version 1 datavault erasure receipt"):
        verify_signed_receipt(as_receipt, JWKS)
    receipt = {"v": 1, "type": "datavault.erasure-receipt", "erasure_id": "x"}
    signed = SIGNER.sign(receipt)
    as_checkpoint = {**signed, "checkpoint": signed.pop("receipt")}
    with pytest.raises(LedgerError, match="malformed"):
        decode_checkpoint(json.dumps(as_checkpoint).encode(), JWKS, checkpoint_key(10))
