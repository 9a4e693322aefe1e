"""The client's webhook verification against the Standard Webhooks reference library's
signer (the `standardwebhooks` package), never against the vault's own code: what the
library signs verifies, anything changed does not, the timestamp tolerance holds at its
edge, and the secret never shows."""

from __future__ import annotations

import base64
import json
import os
import pickle
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from datavault_client import WebhookVerificationError, WebhookVerifier

NOW = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)
BODY = json.dumps(
    {
        "type": "erasure.completed",
        "timestamp": "2026-12-06T08:59:58Z",
        "data": {"erasure_id": "4f1c2a8e-0000-4000-8000-000000000001"},
    }
).encode()


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def _headers(
    signer: Webhook, body: bytes, at: datetime = NOW, msg_id: str = "msg_1"
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signer.sign(msg_id, at, body),
    }


def test_what_the_reference_signer_signs_verifies() -> None:
    secret = _secret()
    headers = _headers(Webhook(secret), BODY)
    event = WebhookVerifier(secret).verify(BODY, headers, now=NOW)
    assert (event.id, event.type, event.signed_at) == ("msg_1", "erasure.completed", NOW)
    assert event.data == {"erasure_id": "4f1c2a8e-0000-4000-8000-000000000001"}
    assert event.timestamp == "2026-12-06T08:59:58Z"
    # Header names in any case (a framework may title-case them), the body as str.
    titled = {name.title(): value for name, value in headers.items()}
    assert WebhookVerifier(secret).verify(BODY.decode(), titled, now=NOW).id == "msg_1"


def test_the_signature_is_the_reference_one() -> None:
    secret = _secret()
    ours = WebhookVerifier(secret).signature("msg_2", str(int(NOW.timestamp())), BODY)
    assert "v1," + ours == Webhook(secret).sign("msg_2", NOW, BODY)


def test_the_secret_given_without_prefix_padding_or_as_bytes_is_the_same_key() -> None:
    raw = os.urandom(32)  # 32 bytes: base64 with one '=' of padding
    padded = base64.b64encode(raw).decode()
    headers = _headers(Webhook(raw), BODY)
    for secret in ("whsec_" + padded, padded, "whsec_" + padded.rstrip("="), raw):
        assert WebhookVerifier(secret).verify(BODY, headers, now=NOW).id == "msg_1"


def test_a_rotated_secret_verifies_when_any_signature_matches() -> None:
    """During a rotation the vault signs with the old and the new secret, space-separated."""
    old, new = _secret(), _secret()
    headers = _headers(Webhook(old), BODY)
    headers["webhook-signature"] += " " + Webhook(new).sign("msg_1", NOW, BODY)
    assert WebhookVerifier(new).verify(BODY, headers, now=NOW).id == "msg_1"
    assert WebhookVerifier(old).verify(BODY, headers, now=NOW).id == "msg_1"
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier(_secret()).verify(BODY, headers, now=NOW)


@pytest.mark.parametrize(
    "change",
    ["body", "id", "timestamp", "signature", "scheme", "other secret"],
)
def test_anything_changed_is_refused(change: str) -> None:
    secret = _secret()
    signer = Webhook(secret)
    body, headers = BODY, _headers(signer, BODY)
    if change == "body":
        body = BODY.replace(b"completed", b"cancelled")
    elif change == "id":
        headers["webhook-id"] = "msg_other"
    elif change == "timestamp":
        headers["webhook-timestamp"] = str(int(NOW.timestamp()) + 1)
    elif change == "signature":
        mac = bytearray(base64.b64decode(headers["webhook-signature"][3:]))
        mac[0] ^= 1
        headers["webhook-signature"] = "v1," + base64.b64encode(bytes(mac)).decode()
    elif change == "scheme":  # the right MAC under a version this verifier does not know
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    else:
        headers = _headers(Webhook(_secret()), BODY)
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier(secret).verify(body, headers, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    secret = _secret()
    headers = _headers(Webhook(secret), BODY)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=missing):
        WebhookVerifier(secret).verify(BODY, headers, now=NOW)


def test_the_timestamp_tolerance_holds_at_its_edge() -> None:
    """Five minutes either way by default (the specification's); a second more is refused,
    so a captured delivery cannot be replayed later."""
    secret = _secret()
    signer = Webhook(secret)
    verifier = WebhookVerifier(secret)
    limit = timedelta(minutes=5)
    for signed_at in (NOW - limit, NOW + limit):
        assert verifier.verify(BODY, _headers(signer, BODY, signed_at), now=NOW)
    for signed_at, why in ((NOW - limit - timedelta(seconds=1), "too old"),
                           (NOW + limit + timedelta(seconds=1), "future")):  # fmt: skip
        with pytest.raises(WebhookVerificationError, match=why):
            verifier.verify(BODY, _headers(signer, BODY, signed_at), now=NOW)
    patient = WebhookVerifier(secret, tolerance=timedelta(hours=1))
    assert patient.verify(BODY, _headers(signer, BODY, NOW - timedelta(minutes=59)), now=NOW)
    headers = _headers(signer, BODY)
    headers["webhook-timestamp"] = "2026-12-06T09:00:00Z"
    with pytest.raises(WebhookVerificationError, match="Unix seconds"):
        verifier.verify(BODY, headers, now=NOW)


def test_a_signed_body_that_is_not_an_event_is_refused() -> None:
    secret = _secret()
    signer = Webhook(secret)
    for body in (b"not json", b"[1, 2]", b'{"data": {}}'):
        with pytest.raises(WebhookVerificationError):
            WebhookVerifier(secret).verify(body, _headers(signer, body), now=NOW)


def test_a_bad_secret_is_refused_and_a_good_one_never_shown() -> None:
    for bad in ("whsec_not base64!", "whsec_", b""):
        with pytest.raises(ValueError) as raised:
            WebhookVerifier(bad)
        assert "not base64!" not in str(raised.value)  # the given text is not echoed
    secret = _secret()
    verifier = WebhookVerifier(secret)
    assert secret[6:] not in repr(verifier) and secret[6:] not in str(verifier)
    with pytest.raises(TypeError):
        pickle.dumps(verifier)
    secret_headers = _headers(Webhook(_secret()), BODY)
    with pytest.raises(WebhookVerificationError) as refused:
        verifier.verify(BODY, secret_headers, now=NOW)
    assert secret[6:] not in str(refused.value) and secret_headers["webhook-signature"][3:] not in (
        str(refused.value)
    )
