"""KeyContext encoding and SecretBytes handling."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from crypto.context import (
    OBJECT_ARTEFACT,
    OBJECT_KINDS,
    OBJECT_RECORD,
    OBJECT_SUBJECT,
    PURPOSE_DATA_KEY,
    PURPOSE_RECORD,
    PURPOSE_SUBJECT_KEY,
    PURPOSES,
    KeyContext,
    ObjectIdentity,
)
from crypto.secrets import SecretBytes, generate_key
from tests.crypto.vector_files import context_of, load, spec_context_encoding

VECTORS = load("context")
RECORD_CONTEXT = KeyContext(
    PURPOSE_RECORD, "t", "s", "account", 1, "k", 0, ObjectIdentity(OBJECT_RECORD, "contact", 2)
)


def _encoding(context: KeyContext, version: int) -> bytes:
    return context.encode_v1() if version == 1 else context.encode_v2()


@pytest.mark.parametrize("vector", VECTORS)
def test_context_encoding_matches_vector(vector: dict[str, Any]) -> None:
    expected = bytes.fromhex(vector["encoding"])
    assert _encoding(context_of(vector["context"]), expected[4]) == expected


@pytest.mark.parametrize("vector", VECTORS)
def test_context_vector_follows_the_spec(vector: dict[str, Any]) -> None:
    expected = bytes.fromhex(vector["encoding"])
    assert spec_context_encoding(vector["context"], expected[4]) == expected


def test_both_encodings_have_vectors() -> None:
    assert {bytes.fromhex(v["encoding"])[:5] for v in VECTORS} == {b"DVKC\x01", b"DVKC\x02"}


def test_context_encoding_layout_is_length_prefixed_in_fixed_order() -> None:
    encoded = KeyContext(PURPOSE_DATA_KEY, "t", "", "c", 2, "k", 3).encode_v1()
    assert encoded == (
        b"DVKC\x01"
        + b"\x00\x00\x00\x08data-key"
        + b"\x00\x00\x00\x01t"
        + b"\x00\x00\x00\x00"
        + b"\x00\x00\x00\x01c"
        + (2).to_bytes(8, "big")
        + b"\x00\x00\x00\x01k"
        + (3).to_bytes(8, "big")
    )


def test_v2_encoding_is_the_v1_fields_then_the_object() -> None:
    fields = RECORD_CONTEXT.encode_v1_ignoring_object()[5:]
    assert RECORD_CONTEXT.encode_v2() == (
        b"DVKC\x02"
        + fields
        + b"\x00\x00\x00\x06record"
        + b"\x00\x00\x00\x07contact"
        + (2).to_bytes(8, "big")
    )


def test_v2_encoding_without_an_object_has_the_object_field_empty() -> None:
    bare = dataclasses.replace(RECORD_CONTEXT, object_identity=None)
    assert bare.encode_v2() == b"DVKC\x02" + bare.encode_v1()[5:] + bytes(4 + 4 + 8)


@pytest.mark.parametrize(
    "other",
    [
        None,
        ObjectIdentity(OBJECT_RECORD, "contact", 3),  # another version of the record
        ObjectIdentity(OBJECT_RECORD, "contact-2", 2),  # another record
        ObjectIdentity(OBJECT_ARTEFACT, "contact", 2),
        ObjectIdentity(OBJECT_SUBJECT, "contact", 2),
    ],
)
def test_the_object_changes_the_v2_encoding(other: ObjectIdentity | None) -> None:
    moved = dataclasses.replace(RECORD_CONTEXT, object_identity=other)
    assert moved.encode_v2() != RECORD_CONTEXT.encode_v2()
    # The v1 encoding never saw objects: records and streams written with it bind none.
    assert moved.encode_v1_ignoring_object() == RECORD_CONTEXT.encode_v1_ignoring_object()


def test_object_field_boundaries_are_unambiguous() -> None:
    a = dataclasses.replace(
        RECORD_CONTEXT, key_id="k", object_identity=ObjectIdentity(OBJECT_RECORD, "ab", 1)
    )
    b = dataclasses.replace(
        RECORD_CONTEXT, key_id="k", object_identity=ObjectIdentity(OBJECT_RECORD, "a", 1)
    )
    assert a.encode_v2() != b.encode_v2()


def test_v1_encoding_refuses_a_context_that_names_an_object() -> None:
    # Key wraps use DVKC 01: a context with an object is refused, never encoded as if it
    # named none.
    with pytest.raises(ValueError, match="object"):
        RECORD_CONTEXT.encode_v1()


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "row", "name": "x"},
        {"kind": OBJECT_RECORD, "name": ""},
        {"kind": OBJECT_RECORD, "name": "x" * 4097},
        {"kind": OBJECT_RECORD, "name": "x", "version": -1},
        {"kind": OBJECT_RECORD, "name": "x", "version": 2**64},
        {"kind": OBJECT_RECORD, "name": "x", "version": True},
    ],
)
def test_invalid_object_identity_is_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ObjectIdentity(**fields)


def test_object_identity_must_be_typed() -> None:
    assert len(OBJECT_KINDS) == 3
    with pytest.raises(TypeError):
        KeyContext(PURPOSE_RECORD, object_identity="record/contact/2")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"purpose": PURPOSE_DATA_KEY},
        {"tenant_id": "t2"},
        {"subject_id": "s2"},
        {"category": "billing"},
        {"generation": 2},
        {"key_id": "k2"},
        {"version": 2},
    ],
)
def test_every_field_changes_the_encoding(change: dict[str, object]) -> None:
    base = KeyContext(PURPOSE_SUBJECT_KEY, "t", "s", "account", 1, "k", 1)
    moved = dataclasses.replace(base, **change)  # type: ignore[arg-type]
    assert moved.encode_v1() != base.encode_v1()
    assert moved.encode_v2() != base.encode_v2()


def test_field_boundaries_are_unambiguous() -> None:
    a = KeyContext(PURPOSE_SUBJECT_KEY, tenant_id="ab", subject_id="c")
    b = KeyContext(PURPOSE_SUBJECT_KEY, tenant_id="a", subject_id="bc")
    assert a.encode_v1() != b.encode_v1()
    assert a.encode_v2() != b.encode_v2()


def test_unknown_purpose_is_rejected() -> None:
    with pytest.raises(ValueError, match="purpose"):
        KeyContext("anything")
    assert len(PURPOSES) == 9


@pytest.mark.parametrize("bad", [-1, 2**64, True])
def test_generation_out_of_range_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError):
        KeyContext(PURPOSE_SUBJECT_KEY, generation=bad)


def test_lone_surrogate_in_context_is_rejected() -> None:
    with pytest.raises(UnicodeEncodeError):
        KeyContext(PURPOSE_SUBJECT_KEY, tenant_id="\ud800")


def test_context_is_immutable() -> None:
    context = KeyContext(PURPOSE_SUBJECT_KEY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.tenant_id = "other"  # type: ignore[misc]


def test_secret_repr_and_str_are_masked() -> None:
    key = SecretBytes(b"\x01" * 32)
    for text in (repr(key), str(key), f"{key}", f"{[key]}"):
        assert text.count("redacted") == 1
        assert "01" not in text and "\\x01" not in text
    assert repr(key) == "SecretBytes(<32 bytes redacted>)"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_pickling_is_refused(protocol: int) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(generate_key(), protocol=protocol)


def test_secret_getstate_is_refused() -> None:
    with pytest.raises(TypeError):
        generate_key().__getstate__()


def test_secret_copy_is_the_same_immutable_object() -> None:
    key = generate_key()
    assert copy.copy(key) is key and copy.deepcopy(key) is key


def test_secret_equality_compares_contents() -> None:
    assert SecretBytes(b"a" * 32) == SecretBytes(bytearray(b"a" * 32))
    assert SecretBytes(b"a" * 32) != SecretBytes(b"b" * 32)
    assert SecretBytes(b"a") != b"a"


def test_secret_is_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(generate_key())


def test_secret_rejects_str() -> None:
    with pytest.raises(TypeError):
        SecretBytes("text")  # type: ignore[arg-type]


def test_generated_keys_are_32_distinct_bytes() -> None:
    a, b = generate_key(), generate_key()
    assert len(a) == 32 and len(a.reveal()) == 32
    assert a != b
