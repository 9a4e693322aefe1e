"""Key wrapping and sealed records: vectors, round trips, and every way to break them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.context import PURPOSE_DATA_KEY, PURPOSE_RECORD, PURPOSE_SUBJECT_KEY, KeyContext
from crypto.errors import IntegrityError
from crypto.keywrap import WRAPPED_KEY_SIZE, _wrap_key_with, unwrap_key, wrap_key
from crypto.records import RECORD_OVERHEAD, _seal_record_with, open_record, seal_record
from crypto.secrets import SecretBytes, generate_key

VECTORS = Path(__file__).parent / "vectors"
FAST = settings(max_examples=40, deadline=None, database=None)
CONTEXT = KeyContext(PURPOSE_SUBJECT_KEY, "tenant-a", "subject-1", "recordings", 1, "sk-1", 1)
MOVES: list[dict[str, Any]] = [
    {"purpose": PURPOSE_DATA_KEY},
    {"tenant_id": "tenant-b"},
    {"subject_id": "subject-2"},
    {"category": "billing"},
    {"generation": 2},
    {"key_id": "sk-2"},
    {"version": 2},
]


def load(name: str) -> list[dict[str, Any]]:
    return list(json.loads((VECTORS / f"{name}.json").read_text()))


def replay(*parts: bytes) -> Callable[[int], bytes]:
    queue = list(parts)
    return lambda n: queue.pop(0)


def _replace(context: KeyContext, change: dict[str, Any]) -> KeyContext:
    return dataclasses.replace(context, **change)


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


@pytest.mark.parametrize("vector", load("keywrap"))
def test_key_wrap_matches_vector_byte_for_byte(vector: dict[str, Any]) -> None:
    context = KeyContext(**vector["context"])
    wrapping = SecretBytes(bytes.fromhex(vector["wrapping_key"]))
    key = SecretBytes(bytes.fromhex(vector["key"]))
    rng = replay(bytes.fromhex(vector["salt"]), bytes.fromhex(vector["nonce"]))
    wrapped = bytes.fromhex(vector["wrapped"])
    assert _wrap_key_with(wrapping, key, context, rng) == wrapped
    assert unwrap_key(wrapping, wrapped, context) == key


@pytest.mark.parametrize("vector", load("keywrap"))
def test_key_wrap_vector_follows_the_spec(vector: dict[str, Any]) -> None:
    # Independent of crypto/: FORMAT.md's recipe with pyca/cryptography directly.
    wrapped = bytes.fromhex(vector["wrapped"])
    salt, nonce = wrapped[1:33], wrapped[33:45]
    one_time = hkdf(bytes.fromhex(vector["wrapping_key"]), salt, b"datavault/keywrap/v1")
    aad = KeyContext(**vector["context"]).encode()
    assert wrapped[0] == 0xA1
    assert AESGCM(one_time).decrypt(nonce, wrapped[45:], aad).hex() == vector["key"]


def test_wrap_round_trip_and_size() -> None:
    wrapping, key = generate_key(), generate_key()
    wrapped = wrap_key(wrapping, key, CONTEXT)
    assert len(wrapped) == WRAPPED_KEY_SIZE == 93
    assert unwrap_key(wrapping, wrapped, CONTEXT) == key


def test_wrapping_twice_gives_different_bytes() -> None:
    wrapping, key = generate_key(), generate_key()
    assert wrap_key(wrapping, key, CONTEXT) != wrap_key(wrapping, key, CONTEXT)


@pytest.mark.parametrize("move", MOVES)
def test_wrapped_key_moved_to_another_context_fails(move: dict[str, Any]) -> None:
    wrapping = generate_key()
    wrapped = wrap_key(wrapping, generate_key(), CONTEXT)
    with pytest.raises(IntegrityError):
        unwrap_key(wrapping, wrapped, _replace(CONTEXT, move))


def test_wrapped_key_under_another_wrapping_key_fails() -> None:
    wrapped = wrap_key(generate_key(), generate_key(), CONTEXT)
    with pytest.raises(IntegrityError):
        unwrap_key(generate_key(), wrapped, CONTEXT)


def test_every_flipped_bit_of_a_wrapped_key_is_integrity_error() -> None:
    wrapping = generate_key()
    wrapped = wrap_key(wrapping, generate_key(), CONTEXT)
    for bit in range(len(wrapped) * 8):
        tampered = bytearray(wrapped)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(IntegrityError) as info:
            unwrap_key(wrapping, bytes(tampered), CONTEXT)
        assert str(info.value) == "ciphertext failed integrity check"


@pytest.mark.parametrize("cut", [0, 1, 45, 92])
def test_truncated_wrapped_key_is_integrity_error(cut: int) -> None:
    wrapping = generate_key()
    wrapped = wrap_key(wrapping, generate_key(), CONTEXT)
    with pytest.raises(IntegrityError):
        unwrap_key(wrapping, wrapped[:cut], CONTEXT)
    with pytest.raises(IntegrityError):
        unwrap_key(wrapping, wrapped + b"\x00", CONTEXT)


def test_wrap_refuses_keys_that_are_not_256_bit() -> None:
    with pytest.raises(ValueError):
        wrap_key(SecretBytes(b"short"), generate_key(), CONTEXT)
    with pytest.raises(ValueError):
        wrap_key(generate_key(), SecretBytes(b"x" * 16), CONTEXT)


@pytest.mark.parametrize("vector", load("record"))
def test_record_matches_vector_byte_for_byte(vector: dict[str, Any]) -> None:
    context = KeyContext(**vector["context"])
    key = SecretBytes(bytes.fromhex(vector["data_key"]))
    rng = replay(bytes.fromhex(vector["salt"]), bytes.fromhex(vector["nonce"]))
    plaintext, sealed = bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["sealed"])
    assert _seal_record_with(key, plaintext, context, rng) == sealed
    assert open_record(key, sealed, context) == plaintext


@pytest.mark.parametrize("vector", load("record"))
def test_record_vector_follows_the_spec(vector: dict[str, Any]) -> None:
    sealed, ikm = bytes.fromhex(vector["sealed"]), bytes.fromhex(vector["data_key"])
    salt, commitment, nonce = sealed[1:33], sealed[33:65], sealed[65:77]
    assert sealed[0] == 0xB1
    assert commitment == hkdf(ikm, salt, b"datavault/record/v1/commitment")
    key = hkdf(ikm, salt, b"datavault/record/v1/key")
    aad = KeyContext(**vector["context"]).encode()
    assert AESGCM(key).decrypt(nonce, sealed[77:], aad).hex() == vector["plaintext"]


@FAST
@given(plaintext=st.binary(max_size=512))
def test_record_round_trips_any_plaintext(plaintext: bytes) -> None:
    key = generate_key()
    context = KeyContext(PURPOSE_RECORD, "t", "s", "account", 1, "r", 1)
    sealed = seal_record(key, plaintext, context)
    assert len(sealed) == len(plaintext) + RECORD_OVERHEAD
    assert open_record(key, sealed, context) == plaintext


@FAST
@given(data=st.data())
def test_record_with_any_flipped_bit_is_integrity_error(data: st.DataObject) -> None:
    key = generate_key()
    context = KeyContext(PURPOSE_RECORD, "t", "s", "account", 1, "r", 1)
    sealed = bytearray(seal_record(key, data.draw(st.binary(max_size=64)), context))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        open_record(key, bytes(sealed), context)


@pytest.mark.parametrize("move", MOVES[1:])
def test_record_moved_to_another_context_fails(move: dict[str, Any]) -> None:
    key = generate_key()
    context = _replace(CONTEXT, {"purpose": PURPOSE_RECORD})
    sealed = seal_record(key, b"billing row", context)
    with pytest.raises(IntegrityError):
        open_record(key, sealed, _replace(context, move))


def test_record_under_another_key_fails_at_the_commitment() -> None:
    context = _replace(CONTEXT, {"purpose": PURPOSE_RECORD})
    sealed = seal_record(generate_key(), b"x", context)
    with pytest.raises(IntegrityError):
        open_record(generate_key(), sealed, context)


def test_record_with_wrong_version_byte_is_integrity_error() -> None:
    key = generate_key()
    context = _replace(CONTEXT, {"purpose": PURPOSE_RECORD})
    sealed = seal_record(key, b"x", context)
    with pytest.raises(IntegrityError):
        open_record(key, b"\xa1" + sealed[1:], context)
    with pytest.raises(IntegrityError):
        open_record(key, sealed[: RECORD_OVERHEAD - 1], context)


def test_rewrap_moves_a_key_to_another_wrapping_key_without_showing_it() -> None:
    from crypto.keywrap import rewrap_key

    old, new, key = generate_key(), generate_key(), generate_key()
    context = KeyContext(purpose=PURPOSE_DATA_KEY, tenant_id="t", subject_id="s", key_id="d")
    moved = rewrap_key(old, new, wrap_key(old, key, context), context)
    assert unwrap_key(new, moved, context).reveal() == key.reveal()
    with pytest.raises(IntegrityError):
        unwrap_key(old, moved, context)  # the old wrapping key opens nothing any more
    other = dataclasses.replace(context, key_id="another")
    with pytest.raises(IntegrityError):
        rewrap_key(old, new, wrap_key(old, key, context), other)
    # A new context binds the moved key to it, and only to it.
    versioned = dataclasses.replace(context, version=2)
    moved = rewrap_key(old, new, wrap_key(old, key, context), context, versioned)
    assert unwrap_key(new, moved, versioned).reveal() == key.reveal()
    with pytest.raises(IntegrityError):
        unwrap_key(new, moved, context)
