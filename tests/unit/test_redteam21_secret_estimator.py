"""Red team 21: the own-secret estimator (vault/domain/secret_strength.py) attacked for
false refusals of random secrets and for slowness. What held (regression tests).

The estimator is cubic in the worst case (`_repeat_end` on a periodic text: 2,000 'a's
took 5.8 s), but check_own_secret refuses anything over OWN_SECRET_MAX_LENGTH (256)
before estimating, and at 256 the worst inputs found take ~15-50 ms."""

from __future__ import annotations

import base64
import secrets
import time

import pytest

from vault.domain.api_keys import OWN_SECRET_MAX_LENGTH, check_own_secret
from vault.domain.secret_strength import estimate_entropy_bits
from vault.errors import InvalidInput


def test_held_a_thousand_random_43_character_base64url_secrets_pass() -> None:
    for _ in range(1000):
        check_own_secret(secrets.token_urlsafe(32))


@pytest.mark.parametrize(
    "draw",
    [
        lambda: secrets.token_hex(32),
        lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        lambda: secrets.token_urlsafe(24),  # 32 characters, the minimum length
    ],
    ids=["hex-64", "base64-44", "base64url-32"],
)
def test_held_random_secrets_of_other_documented_shapes_pass(draw: object) -> None:
    for _ in range(300):
        check_own_secret(draw())  # type: ignore[operator]


def test_held_an_over_long_secret_is_refused_before_it_is_estimated() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match="at most"):
        check_own_secret("a" * 10_000)
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    "worst",
    ["a" * OWN_SECRET_MAX_LENGTH, "ab" * 128, "aab" * 85 + "a", "Aa1!" * 64, "a1" * 128],
    ids=["one-letter", "two-letter", "three-period", "four-block", "interleaved"],
)
def test_held_the_slowest_inputs_at_the_maximum_length_take_well_under_a_second(
    worst: str,
) -> None:
    assert len(worst) <= OWN_SECRET_MAX_LENGTH
    started = time.perf_counter()
    assert estimate_entropy_bits(worst) < 128
    assert time.perf_counter() - started < 0.5  # ~15-50 ms measured on a loaded machine
