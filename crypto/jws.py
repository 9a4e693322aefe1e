"""Compact JWS (RFC 7515 §7.1) signed with Ed25519: `alg` "Ed25519" (RFC 9864, the
fully-specified name; the polymorphic "EdDSA" of RFC 8037 is deprecated).

    BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(Ed25519(signing input))

where the signing input is the ASCII of the first two parts joined by ".". The caller
passes the protected header and the payload as bytes (its own canonical JSON), so what
is signed is exactly what it chose; this module neither builds nor interprets JSON.
Any JOSE library verifies the result with the public key as an OKP JWK.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from crypto import signing
from crypto.secrets import SecretBytes

ALG: Final = "Ed25519"
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_SIGNATURE_BYTES: Final = 64
# A compact JWS longer than this is not one this vault issued (a receipt is a few KiB);
# refused before anything is decoded.
MAX_COMPACT_LENGTH: Final = 1024 * 1024


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict inverse of `b64url`: only the URL-safe alphabet, no padding, canonical
    trailing bits (so one value has one encoding). ValueError otherwise."""
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("not base64url without padding") from None
    if b64url(data) != text:
        raise ValueError("not canonical base64url")
    return data


@dataclass(frozen=True)
class CompactJws:
    """A compact JWS taken apart, not yet verified."""

    header: bytes
    payload: bytes
    signature: bytes
    signing_input: bytes


def sign_compact(signing_key: SecretBytes, header: bytes, payload: bytes) -> str:
    """The compact serialization of `payload` under the protected `header` (both the
    exact bytes to encode: the caller's JSON)."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = signing.sign(signing_key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def parse_compact(token: str) -> CompactJws:
    """Take a compact JWS apart; ValueError if it is not three strict base64url parts
    with a 64-byte signature. Nothing is verified yet (see `verify_compact`)."""
    if not isinstance(token, str) or len(token) > MAX_COMPACT_LENGTH:
        raise ValueError("not a compact JWS")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS: expected three parts")
    header, payload, signature = (b64url_decode(part) for part in parts)
    if len(signature) != _SIGNATURE_BYTES:
        raise ValueError("the JWS signature has the wrong length for Ed25519")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return CompactJws(header, payload, signature, signing_input)


def verify_compact(public_key: bytes, jws: CompactJws) -> None:
    """Return if the signature is valid under `public_key`; IntegrityError otherwise."""
    signing.verify(public_key, jws.signature, jws.signing_input)
