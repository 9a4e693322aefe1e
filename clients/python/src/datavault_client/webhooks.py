"""Verifying the vault's webhook deliveries (Standard Webhooks, standardwebhooks.com).

A delivery is a POST with a JSON body and three headers: `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature`, a space-separated list of
`v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`, keyed with the bytes of the
endpoint's secret (`whsec_` + base64). Verify the raw body as received, before parsing
it. A timestamp further than the tolerance from now (5 minutes, the specification's
default) is refused, so a captured delivery cannot be replayed later; deduplicate on
`webhook-id`, which stays the same over retries.

    verifier = WebhookVerifier(os.environ["DATAVAULT_WEBHOOK_SECRET"])
    event = verifier.verify(request_body_bytes, request_headers)  # raises if forged
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from datavault_client.errors import WebhookVerificationError
from datavault_client.secret import Secret

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
DEFAULT_TOLERANCE: Final = timedelta(minutes=5)
# The signature scheme this verifier knows; entries of other versions are skipped.
_VERSION: Final = "v1"


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery: `id` (the `webhook-id`), when it was signed, and the body's
    `type`, `timestamp` (when the event happened) and `data`."""

    id: str
    signed_at: datetime
    type: str
    timestamp: str | None
    data: dict[str, Any]
    payload: dict[str, Any]


class WebhookVerifier:
    def __init__(
        self, secret: str | Secret | bytes, *, tolerance: timedelta = DEFAULT_TOLERANCE
    ) -> None:
        """`secret`: the `whsec_…` string the vault showed when the endpoint was
        registered (or its raw key bytes)."""
        self._key = _key_bytes(secret)
        self._tolerance = tolerance

    def __repr__(self) -> str:
        return "WebhookVerifier(secret=…)"

    def __reduce__(self) -> Any:
        raise TypeError("a WebhookVerifier holds a secret and cannot be pickled")

    def verify(
        self, body: bytes | str, headers: Mapping[str, str], *, now: datetime | None = None
    ) -> WebhookEvent:
        raw = body.encode() if isinstance(body, str) else bytes(body)
        lowered = {name.lower(): value for name, value in headers.items()}
        message_id = _header(lowered, "webhook-id")
        stamp = _header(lowered, "webhook-timestamp")
        signatures = _header(lowered, "webhook-signature")
        signed_at = self._check_time(stamp, now or datetime.now(UTC))
        expected = self.signature(message_id, stamp, raw)
        if not any(
            hmac.compare_digest(candidate.encode(), expected.encode())
            for version, candidate in _entries(signatures)
            if version == _VERSION
        ):
            raise WebhookVerificationError("no matching signature")
        return _event(message_id, signed_at, raw)

    def signature(self, message_id: str, timestamp: str, body: bytes) -> str:
        """The base64 HMAC-SHA256 a delivery with these values carries after `v1,`."""
        signed = f"{message_id}.{timestamp}.".encode() + body
        return base64.b64encode(hmac.new(self._key, signed, hashlib.sha256).digest()).decode()

    def _check_time(self, stamp: str, now: datetime) -> datetime:
        if not stamp.isdigit():
            raise WebhookVerificationError("webhook-timestamp is not Unix seconds")
        try:
            signed_at = datetime.fromtimestamp(int(stamp), UTC)
        except (OverflowError, ValueError, OSError):
            raise WebhookVerificationError("webhook-timestamp is out of range") from None
        if signed_at < now - self._tolerance:
            raise WebhookVerificationError("the delivery's timestamp is too old")
        if signed_at > now + self._tolerance:
            raise WebhookVerificationError("the delivery's timestamp is in the future")
        return signed_at


def _key_bytes(secret: str | Secret | bytes) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    else:
        text = (secret.reveal() if isinstance(secret, Secret) else secret).strip()
        encoded = text.removeprefix(SECRET_PREFIX)
        # Padding is optional: the specification's own libraries accept a secret without it.
        encoded += "=" * (-len(encoded) % 4)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise WebhookVerificationError(f"the {name} header is missing")
    return value.strip()


def _entries(header: str) -> list[tuple[str, str]]:
    entries = []
    for entry in header.split():
        version, comma, signature = entry.partition(",")
        if comma:
            entries.append((version, signature))
    return entries


def _event(message_id: str, signed_at: datetime, raw: bytes) -> WebhookEvent:
    try:
        payload = json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise WebhookVerificationError("the body is not an event")
    data = payload.get("data")
    timestamp = payload.get("timestamp")
    return WebhookEvent(
        id=message_id,
        signed_at=signed_at,
        type=payload["type"],
        timestamp=timestamp if isinstance(timestamp, str) else None,
        data=data if isinstance(data, dict) else {},
        payload=payload,
    )
