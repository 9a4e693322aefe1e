"""Red team 21: the two-person rule's `person` (vault/domain/holds.py) attacked.

Invisible characters (format characters and other default-ignorable code points) change
nothing a reader of the journal or the console sees, so an owner written with one names
the same person as without it: a second admin key issued to "kim\u200b@example.test"
looks like Kim's in every listing, yet the rule counted it as another person's (fixed:
person() drops them).

Not treated as one person, on purpose (what held): a Cyrillic letter where a Latin one
looks alike (a different string a human may not tell apart, but also a different name in
a script that uses it: folding confusables would merge real people; refusing mixed-script
owners at key creation is the safer fix), plus-addressing and a trailing dot in an
address (owners are declared names, not verified mailboxes; whether kim+1@ is kim@ is the
mail provider's rule), and names that differ only in accents or letters.
"""

from __future__ import annotations

import uuid

import pytest

from vault.domain.holds import KeyHolder, person, second_person_refusal


def _key(owner: str | None, *, creators: tuple[str, ...] = ()) -> KeyHolder:
    key_id = uuid.uuid4()
    owners = frozenset(o for o in (owner, *creators) if o is not None)
    return KeyHolder(key_id, owner, False, False, frozenset({key_id}), owners)


INVISIBLE = [
    pytest.param("kim\u200b@example.test", id="zero-width-space"),
    pytest.param("k\u2060im@example.test", id="word-joiner"),
    pytest.param("k\u00adim@example.test", id="soft-hyphen"),
    pytest.param("\u200ekim@example.test", id="left-to-right-mark"),
    pytest.param("\u202dkim@example.test\u202c", id="bidi-override"),
    pytest.param("\ufeffkim@example.test", id="byte-order-mark"),
    pytest.param("k\u034fim@example.test", id="combining-grapheme-joiner"),
]


@pytest.mark.parametrize("disguised", INVISIBLE)
def test_an_owner_with_invisible_characters_is_the_same_person(disguised: str) -> None:
    assert person(disguised) == person("kim@example.test")
    assert second_person_refusal(_key("kim@example.test"), _key(disguised)) is not None


def test_a_creator_with_invisible_characters_is_the_same_creator() -> None:
    asker = _key("ana", creators=("admin@example.test",))
    confirmer = _key("ben", creators=("admin\u200b@example.test",))
    assert second_person_refusal(asker, confirmer) is not None


@pytest.mark.parametrize(
    "first, second",
    [
        ("anna", "\u0430nna"),  # Cyrillic a (U+0430): a confusable, not folded (see the docstring)
        ("kim@example.test", "kim+1@example.test"),
        ("kim@example.test", "kim@example.test."),
        ("José", "Jose"),
        ("Müller", "Muller"),
        ("I\u015f\u0131k", "Isik"),  # Turkish dotless i is another letter
        ("Kim Lee", "Lee Kim"),
        ("李", "季"),
        ("kim lee", "kimlee"),
    ],
)
def test_held_different_spellings_of_different_names_are_two_people(
    first: str, second: str
) -> None:
    assert person(first) != person(second)
    assert second_person_refusal(_key(first), _key(second)) is None


@pytest.mark.parametrize(
    "first, second",
    [
        ("kim lee", "kim\u00a0lee"),  # no-break space
        ("kim lee", "kim\u3000lee"),  # ideographic space
        ("\uff4b\uff49\uff4d", "kim"),  # full-width
        ("ﬁona", "fiona"),  # ligature
        ("Σοφία", "σοφία"),
    ],
)
def test_held_one_name_in_compatibility_spellings_is_one_person(first: str, second: str) -> None:
    assert person(first) == person(second)
    assert second_person_refusal(_key(first), _key(second)) is not None
