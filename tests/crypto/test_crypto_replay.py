"""Idempotency replays open only for the API key (and tenant, and Idempotency-Key) that
sealed them."""

from __future__ import annotations

import uuid

import pytest

from crypto.errors import IntegrityError
from crypto.replay import ReplaySealer

SECRET = "dv_abcdefgh_" + "s" * 43


def test_an_answer_opens_for_the_same_key_only() -> None:
    tenant, api_key = uuid.uuid4(), uuid.uuid4()
    sealer = ReplaySealer(SECRET, tenant, api_key)
    key_id = sealer.key_id("order-7")
    sealed = sealer.seal(b'{"id": 1}', key_id)
    assert ReplaySealer(SECRET, tenant, api_key).open(sealed, key_id) == b'{"id": 1}'
    for other in (
        ReplaySealer(SECRET[:-1] + "t", tenant, api_key),  # another secret
        ReplaySealer(SECRET, uuid.uuid4(), api_key),  # another tenant
        ReplaySealer(SECRET, tenant, uuid.uuid4()),  # another key id
    ):
        with pytest.raises(IntegrityError):
            other.open(sealed, other.key_id("order-7"))
    with pytest.raises(IntegrityError):
        sealer.open(sealed, sealer.key_id("order-8"))
    assert b"id" not in sealed


def test_ids_and_fingerprints_are_keyed_and_unambiguous() -> None:
    one = ReplaySealer(SECRET, uuid.uuid4(), uuid.uuid4())
    two = ReplaySealer(SECRET[:-1] + "t", uuid.uuid4(), uuid.uuid4())
    assert one.key_id("k") != two.key_id("k")
    assert one.key_id("k") == one.key_id("k")
    assert one.fingerprint([b"ab", b"c"]) != one.fingerprint([b"a", b"bc"])
    assert one.fingerprint([b"POST", b"/v1/holds"]) == one.fingerprint([b"POST", b"/v1/holds"])
