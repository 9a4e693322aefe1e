"""Who counts as one person under the two-person release rule (vault/domain/holds.py):
owners compared as the person they name, not as the string typed (red team 17)."""

from __future__ import annotations

import uuid

import pytest

from vault.domain.holds import KeyHolder, person, second_person_refusal


def _key(owner: str | None, *, creators: tuple[str, ...] = (), expired: bool = False) -> KeyHolder:
    key_id = uuid.uuid4()
    owners = frozenset(o for o in (owner, *creators) if o is not None)
    return KeyHolder(key_id, owner, False, expired, frozenset({key_id}), owners)


@pytest.mark.parametrize(
    "first, second",
    [
        ("kim@example.test", "Kim@Example.test "),
        ("Kim  Lee", " kim lee"),
        ("Zoë", "Zoe\u0308"),  # composed and decomposed
        ("\uff2b\uff29\uff2d", "kim"),  # full-width
        ("Straße", "STRASSE"),  # case folding, not lower()
        ("kim\tlee", "kim lee"),
    ],
)
def test_one_owner_spelled_two_ways_is_one_person(first: str, second: str) -> None:
    assert person(first) == person(second)
    assert second_person_refusal(_key(first), _key(second)) is not None


def test_two_spellings_in_the_lineages_are_one_creator() -> None:
    asker = _key("ana", creators=("Admin@Example.test",))
    confirmer = _key("ben", creators=("admin@example.test ",))
    refusal = second_person_refusal(asker, confirmer)
    assert refusal is not None and "share a creator" in refusal


@pytest.mark.parametrize("first, second", [("kim", "kin"), ("kim lee", "kimlee"), ("ana", "anna")])
def test_different_owners_are_two_people(first: str, second: str) -> None:
    assert person(first) != person(second)
    assert second_person_refusal(_key(first), _key(second)) is None


def test_an_expired_askers_request_is_refused_as_a_revoked_one() -> None:
    refusal = second_person_refusal(_key("ana", expired=True), _key("ben"))
    assert refusal is not None and "expired" in refusal
