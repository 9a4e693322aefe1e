"""Compact JWS with Ed25519 (crypto/jws.py): the RFC 8037 vector byte for byte, and
every malformed or altered part refused."""

from __future__ import annotations

import pytest

from crypto.errors import IntegrityError
from crypto.jws import b64url, parse_compact, sign_compact, verify_compact
from crypto.secrets import SecretBytes
from crypto.signing import generate_signing_key, public_key

# RFC 8037, appendix A.1 (the key: RFC 8032 §7.1 TEST 1) and A.4 (the JWS). The header
# there says "EdDSA", RFC 9864's deprecated name; the serialization is the same.
RFC8037_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def test_rfc_8037_appendix_a4_byte_for_byte() -> None:
    key = SecretBytes(bytes.fromhex(RFC8037_SEED))
    produced = sign_compact(key, b'{"alg":"EdDSA"}', b"Example of Ed25519 signing")
    assert produced == RFC8037_JWS
    parsed = parse_compact(RFC8037_JWS)
    assert (parsed.header, parsed.payload) == (b'{"alg":"EdDSA"}', b"Example of Ed25519 signing")
    verify_compact(public_key(key), parsed)


def test_a_changed_part_does_not_verify() -> None:
    key = generate_signing_key()
    token = sign_compact(key, b'{"alg":"Ed25519"}', b'{"a":1}')
    header, payload, signature = token.split(".")
    other_header, other_payload = b64url(b'{"alg":"none"}'), b64url(b'{"a":2}')
    for altered in (
        f"{other_header}.{payload}.{signature}",
        f"{header}.{other_payload}.{signature}",
        f"{header}.{payload}.{b64url(bytes(64))}",
    ):
        with pytest.raises(IntegrityError):
            verify_compact(public_key(key), parse_compact(altered))
    with pytest.raises(IntegrityError):
        verify_compact(public_key(generate_signing_key()), parse_compact(token))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "eyJ9.e30=." + "A" * 86,  # padding
        "eyJ9.e30." + "A" * 85,  # 63-byte signature
        "eyJ9.e+0." + "A" * 86,  # standard alphabet
        "eyJ9.e31." + "A" * 86,  # non-canonical trailing bits
        "x" * (1024 * 1024 + 1),
    ],
)
def test_a_malformed_compact_jws_is_refused_before_verifying(token: str) -> None:
    with pytest.raises(ValueError):
        parse_compact(token)
