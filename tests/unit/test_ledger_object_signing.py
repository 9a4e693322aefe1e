"""Signed shred-ledger objects, without a database: what `parse_entry` accepts, what it
refuses and which sequence it names, and where `SignedWindow` still admits an object
written before ledger signing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from crypto import signing
from vault.services.ledger_objects import (
    GENESIS,
    LedgerError,
    LedgerObject,
    SignedWindow,
    encode_entry,
    parse_entry,
)
from vault.services.receipts import ReceiptSigner, jwk, key_id_for

ENTRY = {"tenant_id": "4b1c2a39-7c40-4d4e-9b8e-7a2f1d3c5e6f", "outbox_id": 7,
         "key_kind": "subject", "key_id": "0e9c1c52-52b8-4d8f-9d6e-2a1b3c4d5e6f",
         "erasure_id": None, "destroyed_at": "2026-12-01T10:00:00+00:00"}  # fmt: skip


def _signer() -> ReceiptSigner:
    key = signing.generate_signing_key()
    return ReceiptSigner(key_id_for(signing.public_key(key)), key)


def _jwks(*signers: ReceiptSigner) -> dict[str, Any]:
    return {"keys": [jwk(s.kid, s.public_key) for s in signers]}


def _unsigned(seq: int, prev: bytes, entries: list[dict[str, Any]]) -> bytes:
    """An object as the vault wrote them before ledger signing."""
    document = {"format": "datavault.shred-ledger", "v": 1, "seq": seq, "prev": prev.hex(),
                "entries": entries}  # fmt: skip
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_a_signed_object_parses_with_its_signer_and_chains_over_its_signature() -> None:
    signer = _signer()
    data, digest = encode_entry(3, GENESIS, [ENTRY], signer)
    parsed = parse_entry(data, _jwks(signer), 3)
    assert (parsed.seq, parsed.prev, parsed.entries) == (3, GENESIS, [ENTRY])
    assert parsed.key_id == signer.kid
    # The next object links to the stored bytes, signature included.
    assert parsed.hash == digest == hashlib.sha256(data).digest()


def test_an_object_written_before_signing_parses_as_unsigned() -> None:
    parsed = parse_entry(_unsigned(2, GENESIS, [ENTRY]), _jwks(), 2)
    assert (parsed.seq, parsed.entries, parsed.key_id) == (2, [ENTRY], None)


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        # Signed by a key the deployment never published.
        (lambda data, own: encode_entry(4, GENESIS, [ENTRY], _signer())[0], "unknown key id"),
        # A foreign key under the deployment's own kid.
        (
            lambda data, own: encode_entry(
                4, GENESIS, [ENTRY], ReceiptSigner(own.kid, signing.generate_signing_key())
            )[0],
            "signature does not verify",
        ),
        # The deployment's signature kept, an entry changed.
        (lambda data, own: data.replace(b'"subject"', b'"data"'), "signature does not verify"),
    ],
)
def test_a_forged_or_changed_signed_object_is_refused_naming_its_seq(
    forge: Any, reason: str
) -> None:
    own = _signer()
    data, _ = encode_entry(4, GENESIS, [ENTRY], own)
    with pytest.raises(LedgerError, match=f"ledger entry 4 does not verify.*{reason}"):
        parse_entry(forge(data, own), _jwks(own), 4)


def test_another_signed_statement_does_not_pass_for_a_ledger_object() -> None:
    """A checkpoint or a receipt is signed by the same key: under the entry's field, with
    its own type, it is malformed, not an entry."""
    signer = _signer()
    statement = {"type": "datavault.shred-ledger-checkpoint", "v": 1, "seq": 4,
                 "prev": GENESIS.hex(), "entries": [ENTRY]}  # fmt: skip
    document = signer.sign_statement("ledger_entry", statement)
    data = json.dumps(document).encode()
    with pytest.raises(LedgerError, match="ledger entry 4 is malformed"):
        parse_entry(data, _jwks(signer), 4)


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"format": "other"}', b'{"seq": 1, "seq": 2}',
     _unsigned(1, GENESIS, [ENTRY]).replace(b'"seq":1', b'"seq":"x"')],
)  # fmt: skip
def test_malformed_objects_are_refused_naming_their_seq(data: bytes) -> None:
    with pytest.raises(LedgerError, match="ledger entry 9 is malformed"):
        parse_entry(data, _jwks(), 9)


def _object(seq: int, signed: bool) -> LedgerObject:
    return LedgerObject(seq, GENESIS, [], bytes(32), "rk-x" if signed else None)


def test_unsigned_objects_are_admitted_only_before_the_first_signed_one() -> None:
    window = SignedWindow(None)  # a database from before the upgrade
    window.admit(_object(1, signed=False))
    window.admit(_object(2, signed=False))
    window.admit(_object(3, signed=True))  # the marker
    assert window.signed_from == 3
    window.admit(_object(4, signed=True))
    with pytest.raises(LedgerError, match=r"ledger entry 5 is not signed.*from entry 3 on"):
        window.admit(_object(5, signed=False))


def test_the_database_closes_the_window_even_when_no_signed_object_is_walked() -> None:
    """A database that recorded the marker (seq 3) walks from its head (6): an unsigned
    object there was appended, though the walk meets no signed object before it."""
    with pytest.raises(LedgerError, match="ledger entry 7 is not signed"):
        SignedWindow(3).admit(_object(7, signed=False))
    SignedWindow(3).admit(_object(2, signed=False))  # before the marker: the old ledger
