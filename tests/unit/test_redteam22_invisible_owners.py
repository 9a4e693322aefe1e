"""Red team 22: `person` (vault/domain/holds.py) drops invisible characters since
c9c9bcb; what an owner made only of them becomes.

Finding: `check_owner` (vault/domain/api_keys.py) refuses an owner that is empty after
`str.strip()`, but a zero-width space, a word joiner, a soft hyphen or a Hangul filler is
not whitespace to Python: a compliance or admin key whose owner is only such characters is
created, listed and journalled with an owner no reader can see, and the two-person rule
compares it as the person "" (nobody). DESIGN.md rests the rule on owners being
attributable ("the journal names both keys, so a false one is attributable").

What held: two such owners are the same person "" to the rule (a release is refused,
never let through); an invisible owner is never the same person as a visible one; a
Persian name written with and without its zero-width non-joiner is one person (a merge
only ever refuses a release, it never lets one through); `person` never raises.
"""

from __future__ import annotations

import uuid

import pytest

from vault.domain.api_keys import check_owner
from vault.domain.holds import KeyHolder, person, second_person_refusal
from vault.domain.scopes import Scope
from vault.errors import InvalidInput

INVISIBLE_ONLY = [
    pytest.param("\u200b", id="zero-width-space"),
    pytest.param("\u2060\u2060", id="word-joiners"),
    pytest.param("\u00ad", id="soft-hyphen"),
    pytest.param("\u3164", id="hangul-filler"),
    pytest.param("\u200e\u200f", id="direction-marks"),
    pytest.param(" \ufeff ", id="byte-order-mark-in-spaces"),
]


def _key(owner: str) -> KeyHolder:
    key_id = uuid.uuid4()
    return KeyHolder(key_id, owner, False, False, frozenset({key_id}), frozenset({owner}))


@pytest.mark.parametrize("owner", INVISIBLE_ONLY)
def test_an_owner_of_invisible_characters_only_is_refused(owner: str) -> None:
    with pytest.raises(InvalidInput):
        check_owner(owner, frozenset({Scope.COMPLIANCE}))


@pytest.mark.parametrize("owner", INVISIBLE_ONLY)
def test_held_invisible_owners_never_confirm_each_other_or_merge_with_a_name(
    owner: str,
) -> None:
    assert person(owner) == ""
    other = _key("\u2060")
    assert second_person_refusal(_key(owner), other) is not None
    assert second_person_refusal(other, _key(owner)) is not None
    assert person(owner) != person("kim@example.test")


def test_held_a_persian_name_with_and_without_its_zwnj_is_one_person() -> None:
    """The zero-width non-joiner changes how the letters join, not who is named; merged,
    the worst outcome is a release refused that two people asked for."""
    assert person("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == person(
        "\u0645\u06cc\u062e\u0648\u0627\u0647\u0645"
    )
    refusal = second_person_refusal(
        _key("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),
        _key("\u0645\u06cc\u062e\u0648\u0627\u0647\u0645"),
    )
    assert refusal is not None


@pytest.mark.parametrize(
    "owner", ["\ud800", "\x00", "\u0301", "\U000e0001", "\ufdd0", "a" * 200, "\u200b" * 200]
)
def test_held_person_never_raises(owner: str) -> None:
    assert isinstance(person(owner), str)
