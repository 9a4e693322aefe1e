import math
import secrets

import pytest

from vault.domain.api_keys import (
    OWN_SECRET_MAX_LENGTH,
    OWN_SECRET_MIN_BITS,
    OWN_SECRET_MIN_LENGTH,
    check_own_secret,
    estimate_entropy_bits,
    generate_key,
    presented_prefix,
)
from vault.errors import InvalidInput


def test_generated_key_has_public_prefix_and_256_bit_secret() -> None:
    material = generate_key()
    token = material.secret.reveal()
    assert token.startswith(f"dv_{material.prefix}_")
    assert len(token.split("_", 2)[2]) == 43  # 32 bytes, base64url
    assert presented_prefix(token) == material.prefix
    assert material.prefix not in repr(material.secret)


def test_two_generated_keys_differ() -> None:
    assert generate_key().secret != generate_key().secret


def test_random_own_secret_at_the_minimum_length_is_accepted() -> None:
    secret = secrets.token_urlsafe(48)[:OWN_SECRET_MIN_LENGTH]
    # 32 random base64url characters: about 190 bits by the class bound.
    check_own_secret(secret)


def test_own_secret_one_below_the_minimum_length_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least 32"):
        check_own_secret(secrets.token_urlsafe(48)[: OWN_SECRET_MIN_LENGTH - 1])


def test_own_secret_above_the_maximum_length_is_refused() -> None:
    check_own_secret(secrets.token_urlsafe(400)[:OWN_SECRET_MAX_LENGTH])
    with pytest.raises(InvalidInput, match="at most"):
        check_own_secret(secrets.token_urlsafe(400)[: OWN_SECRET_MAX_LENGTH + 1])


@pytest.mark.parametrize(
    "guessable",
    [
        "a" * 64,
        "abcdefgh" * 6,
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789" * 5,
        "passwordpasswordpasswordpassword",
    ],
)
def test_guessable_own_secret_is_refused_without_echoing_it(guessable: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_own_secret(guessable)
    assert guessable not in str(raised.value)


def test_own_secret_with_spaces_is_refused() -> None:
    with pytest.raises(InvalidInput, match="printable ASCII"):
        check_own_secret(secrets.token_urlsafe(30) + " " + secrets.token_urlsafe(10))


def test_entropy_estimate_ranks_random_above_repetitive() -> None:
    assert estimate_entropy_bits(secrets.token_urlsafe(32)) >= 128
    assert estimate_entropy_bits("ab" * 32) < 128
    assert estimate_entropy_bits("") == 0


# The entropy bar at its edge, by the estimator's rule: lower-case letters only is a
# class bound of log2(26) ≈ 4.70 bits per unpredictable character, so 27 of them fall
# short of 128 bits (126.9) and 28 clear it (131.6). Both secrets are 32 characters
# (the minimum length): distinct letters, then a step-1 run of which only the first two
# letters count ("mn"; "opq…" continue the run and cost a guesser nothing).
_LOWER_BITS = math.log2(26)
_JUST_BELOW_THE_BAR = "kqzwmjxvbhrfydpgtnlcsoiue" + "mnopqrs"  # 25 + 2 novel
_JUST_ABOVE_THE_BAR = "kqzwmjxvbhrfydpgtnlcsoiuea" + "mnopqr"  # 26 + 2 novel


def test_own_secret_just_below_the_entropy_bar_is_refused() -> None:
    assert len(_JUST_BELOW_THE_BAR) == OWN_SECRET_MIN_LENGTH
    bits = estimate_entropy_bits(_JUST_BELOW_THE_BAR)
    assert bits == pytest.approx(27 * _LOWER_BITS)
    assert bits < OWN_SECRET_MIN_BITS == 128
    with pytest.raises(InvalidInput, match="too guessable"):
        check_own_secret(_JUST_BELOW_THE_BAR)


def test_own_secret_just_above_the_entropy_bar_is_accepted() -> None:
    assert len(_JUST_ABOVE_THE_BAR) == OWN_SECRET_MIN_LENGTH
    bits = estimate_entropy_bits(_JUST_ABOVE_THE_BAR)
    assert bits == pytest.approx(28 * _LOWER_BITS)
    assert bits >= OWN_SECRET_MIN_BITS
    check_own_secret(_JUST_ABOVE_THE_BAR)


def test_presented_prefix_is_none_for_foreign_tokens() -> None:
    assert presented_prefix("not-a-datavault-key") is None
    assert presented_prefix("dv_short_x") is None
