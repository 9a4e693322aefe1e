"""KeyContext encoding and SecretBytes handling."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from crypto.context import (
    PURPOSE_DATA_KEY,
    PURPOSE_SUBJECT_KEY,
    PURPOSES,
    KeyContext,
)
from crypto.secrets import SecretBytes, generate_key

VECTORS = json.loads((Path(__file__).parent / "vectors" / "context.json").read_text())


@pytest.mark.parametrize("vector", VECTORS)
def test_context_encoding_matches_vector(vector: dict[str, object]) -> None:
    context = KeyContext(**vector["context"])  # type: ignore[arg-type]
    assert context.encode().hex() == vector["encoding"]


def test_context_encoding_layout_is_length_prefixed_in_fixed_order() -> None:
    encoded = KeyContext(PURPOSE_DATA_KEY, "t", "", "c", 2, "k", 3).encode()
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
    assert dataclasses.replace(base, **change).encode() != base.encode()  # type: ignore[arg-type]


def test_field_boundaries_are_unambiguous() -> None:
    a = KeyContext(PURPOSE_SUBJECT_KEY, tenant_id="ab", subject_id="c")
    b = KeyContext(PURPOSE_SUBJECT_KEY, tenant_id="a", subject_id="bc")
    assert a.encode() != b.encode()


def test_unknown_purpose_is_rejected() -> None:
    with pytest.raises(ValueError, match="purpose"):
        KeyContext("anything")
    assert len(PURPOSES) == 8


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
