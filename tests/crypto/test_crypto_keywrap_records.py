"""Key wrapping and sealed records: vectors, round trips, and every way to break them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.context import (
    OBJECT_ARTEFACT,
    OBJECT_RECORD,
    PURPOSE_DATA_KEY,
    PURPOSE_RECORD,
    PURPOSE_SUBJECT_KEY,
    KeyContext,
    ObjectIdentity,
)
from crypto.errors import IntegrityError
from crypto.keywrap import WRAPPED_KEY_SIZE, _wrap_key_with, unwrap_key, wrap_key
from crypto.records import (
    RECORD_OVERHEAD,
    RECORD_V1,
    RECORD_V2,
    _seal_record_with,
    open_record,
    seal_record,
)
from crypto.secrets import SecretBytes, generate_key
from tests.crypto.vector_files import context_of, load, spec_context_encoding

RECORD_FORMATS = {0xB1: RECORD_V1, 0xB2: RECORD_V2}
# The DVKC encoding each record version's associated data is (FORMAT.md).
RECORD_CONTEXT_ENCODING = {0xB1: 1, 0xB2: 2}
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


def replay(*parts: bytes) -> Callable[[int], bytes]:
    queue = list(parts)
    return lambda n: queue.pop(0)


def _replace(context: KeyContext, change: dict[str, Any]) -> KeyContext:
    return dataclasses.replace(context, **change)


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


@pytest.mark.parametrize("vector", load("keywrap"))
def test_key_wrap_matches_vector_byte_for_byte(vector: dict[str, Any]) -> None:
    context = context_of(vector["context"])
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
    aad = spec_context_encoding(vector["context"], 1)
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


def test_wrap_refuses_a_context_that_names_an_object() -> None:
    # A1 binds DVKC 01, which has no object field: never drop an object silently.
    context = _replace(CONTEXT, {"object_identity": ObjectIdentity(OBJECT_RECORD, "r", 1)})
    with pytest.raises(ValueError, match="object"):
        wrap_key(generate_key(), generate_key(), context)


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
    context = context_of(vector["context"])
    key = SecretBytes(bytes.fromhex(vector["data_key"]))
    rng = replay(bytes.fromhex(vector["salt"]), bytes.fromhex(vector["nonce"]))
    plaintext, sealed = bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["sealed"])
    assert _seal_record_with(key, plaintext, context, rng, RECORD_FORMATS[sealed[0]]) == sealed
    assert open_record(key, sealed, context) == plaintext


@pytest.mark.parametrize("vector", load("record"))
def test_record_vector_follows_the_spec(vector: dict[str, Any]) -> None:
    sealed, ikm = bytes.fromhex(vector["sealed"]), bytes.fromhex(vector["data_key"])
    salt, commitment, nonce = sealed[1:33], sealed[33:65], sealed[65:77]
    label = {0xB1: b"datavault/record/v1", 0xB2: b"datavault/record/v2"}[sealed[0]]
    assert commitment == hkdf(ikm, salt, label + b"/commitment")
    key = hkdf(ikm, salt, label + b"/key")
    aad = spec_context_encoding(vector["context"], RECORD_CONTEXT_ENCODING[sealed[0]])
    assert AESGCM(key).decrypt(nonce, sealed[77:], aad).hex() == vector["plaintext"]


def test_record_vectors_cover_both_versions_and_new_writes_are_b2() -> None:
    assert {bytes.fromhex(v["sealed"])[0] for v in load("record")} == {0xB1, 0xB2}
    context = KeyContext(
        PURPOSE_RECORD, "t", "s", "account", 1, "r", 0, ObjectIdentity(OBJECT_RECORD, "contact", 1)
    )
    assert seal_record(generate_key(), b"x", context)[0] == 0xB2


@pytest.mark.parametrize(
    "vector", [v for v in load("record") if v["sealed"].startswith("b1")], ids=["empty", "email"]
)
def test_b1_record_written_before_objects_still_opens(vector: dict[str, Any]) -> None:
    """Fixed ciphertext: a record the old code wrote (B1) opens for a reader that names the
    record's object, as every reader now does. B1 binds no object, so it opens whatever
    object is named (the documented limit of records sealed before B2)."""
    key, sealed = SecretBytes(bytes.fromhex(vector["data_key"])), bytes.fromhex(vector["sealed"])
    for obj in (ObjectIdentity(OBJECT_RECORD, "contact", 1), ObjectIdentity(OBJECT_RECORD, "x", 9)):
        context = _replace(context_of(vector["context"]), {"object_identity": obj})
        assert open_record(key, sealed, context).hex() == vector["plaintext"]
    with pytest.raises(IntegrityError):
        open_record(key, sealed, _replace(context_of(vector["context"]), {"key_id": "rec-9"}))


B2_CONTEXT = KeyContext(
    PURPOSE_RECORD, "tenant-a", "subject-1", "account", 1, "dk-1", 0,
    ObjectIdentity(OBJECT_RECORD, "contact", 2),
)  # fmt: skip


@pytest.mark.parametrize(
    "other",
    [
        ObjectIdentity(OBJECT_RECORD, "phone", 2),  # another record of the subject
        ObjectIdentity(OBJECT_RECORD, "contact", 1),  # another version of the record
        ObjectIdentity(OBJECT_RECORD, "contact", 3),
        ObjectIdentity(OBJECT_ARTEFACT, "contact", 2),
        None,
    ],
    ids=["other-record", "older-version", "newer-version", "other-kind", "no-object"],
)
def test_b2_record_opened_as_another_object_is_integrity_error(
    other: ObjectIdentity | None,
) -> None:
    key = generate_key()
    sealed = seal_record(key, b'"alice@example.org"', B2_CONTEXT)
    assert open_record(key, sealed, B2_CONTEXT) == b'"alice@example.org"'
    with pytest.raises(IntegrityError):
        open_record(key, sealed, _replace(B2_CONTEXT, {"object_identity": other}))


def test_b2_record_relabelled_b1_is_integrity_error() -> None:
    # A downgrade to the format that binds no object fails: the version is in the labels.
    key = generate_key()
    sealed = seal_record(key, b"x", B2_CONTEXT)
    with pytest.raises(IntegrityError):
        open_record(key, b"\xb1" + sealed[1:], B2_CONTEXT)


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
    for version in (b"\xa1", b"\xb0", b"\xb3", b"\xc2"):
        with pytest.raises(IntegrityError):
            open_record(key, version + sealed[1:], context)
    with pytest.raises(IntegrityError):
        open_record(key, b"", context)
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
