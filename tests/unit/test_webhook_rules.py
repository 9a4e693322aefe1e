"""Webhook rules without a database or a network: the retry schedule, which addresses a
webhook may reach, what a destination URL may be, the event list, and the signature as
the Standard Webhooks reference library computes it."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from crypto.secrets import SecretBytes
from crypto.webhooks import display_webhook_secret, sign_webhook
from vault.domain.webhook_destinations import is_public_address, refused_addresses
from vault.domain.webhooks import (
    DELIVERY_TIMEOUT_SECONDS,
    MAX_ATTEMPTS,
    MAX_DESCRIPTION_LENGTH,
    MAX_URL_LENGTH,
    RETRY_DELAYS,
    EventType,
    check_description,
    next_attempt_at,
    parse_events,
    parse_webhook_url,
)
from vault.errors import InvalidInput
from vault.services.webhook_outbox import encode_body

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- the retry schedule ---------------------------------------------------------------


def test_retries_span_at_least_24_hours_before_giving_up() -> None:
    # API.md: "otherwise retried with backoff for at least 24 hours".
    at, failures = NOW, 0
    while True:
        failures += 1
        following = next_attempt_at(failures, at)
        if following is None:
            break
        assert following > at
        at = following
    assert failures == MAX_ATTEMPTS == 8
    assert at - NOW >= timedelta(hours=24)
    assert sum(RETRY_DELAYS, timedelta()) == timedelta(hours=27, minutes=35, seconds=5)


def test_backoff_grows_and_ends_at_the_last_step() -> None:
    delays = [next_attempt_at(n, NOW) for n in range(1, len(RETRY_DELAYS) + 1)]
    gaps = [d - NOW for d in delays if d is not None]
    assert gaps == sorted(gaps) and gaps[0] == timedelta(seconds=5)
    assert next_attempt_at(len(RETRY_DELAYS), NOW) is not None
    assert next_attempt_at(len(RETRY_DELAYS) + 1, NOW) is None


def test_no_backoff_is_asked_before_a_failure() -> None:
    with pytest.raises(ValueError):
        next_attempt_at(0, NOW)


def test_an_attempt_has_ten_seconds() -> None:
    assert DELIVERY_TIMEOUT_SECONDS == 10.0


# --- destinations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "192.168.1.1",
        "169.254.169.254",  # cloud metadata service
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "0.0.0.0", "255.255.255.255", "224.0.0.1", "240.0.0.1", "192.0.2.10", "198.18.0.1",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # IPv4-mapped
        "2002:7f00:1::1", "2002:a00:1::1",  # 6to4 of 127.0.0.1 and 10.0.0.1
        "64:ff9b::7f00:1", "64:ff9b:1::a00:1",  # NAT64 of 127.0.0.1 and 10.0.0.1
    ],
)  # fmt: skip
def test_private_loopback_link_local_and_their_disguises_are_refused(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_public_address(ip)
    assert refused_addresses([ip], allow_private=False) == [ip]
    assert refused_addresses([ip], allow_private=True) == []


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_unicast_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    addresses = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")]
    assert refused_addresses(addresses, allow_private=False) == [addresses[1]]


# --- URLs -----------------------------------------------------------------------------


def _url_of_length(length: int) -> str:
    start = "https://hooks.example.com/"
    return start + "a" * (length - len(start))


def test_url_length_limit_is_2048_characters() -> None:
    assert len(parse_webhook_url(_url_of_length(MAX_URL_LENGTH), allow_private_networks=False)
               .text) == MAX_URL_LENGTH  # fmt: skip
    with pytest.raises(InvalidInput, match="2048") as refused:
        parse_webhook_url(_url_of_length(MAX_URL_LENGTH + 1), allow_private_networks=False)
    assert refused.value.field == "url"


@pytest.mark.parametrize(
    "url",
    [
        "", "hooks.example.com/x", "ftp://hooks.example.com/", "https://", "https:///path",
        "https://user:pw@hooks.example.com/", "https://token@hooks.example.com/",
        "https://hooks.example.com/#frag", "https://hooks.example.com/#",
        "https://hooks.example.com/a b", "https://hooks.example.com/caf\u00e9",
        "https://hooks.example.com:99999/", "https://hooks.example.com:port/",
        "https://hooks.example.com:0/",
        "https://[::1/", "https://hooks.example.com/\x00",
    ],
)  # fmt: skip
def test_malformed_or_unsafe_urls_are_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_webhook_url(url, allow_private_networks=True)
    assert refused.value.field == "url"


@pytest.mark.parametrize("value", [None, 42, ["https://hooks.example.com/"]])
def test_a_url_that_is_not_a_string_is_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_webhook_url(value, allow_private_networks=False)


def test_plain_http_only_where_private_networks_are_allowed() -> None:
    with pytest.raises(InvalidInput, match="https"):
        parse_webhook_url("http://hooks.example.com/", allow_private_networks=False)
    url = parse_webhook_url("http://10.0.0.5:8080/in?x=1", allow_private_networks=True)
    assert (url.scheme, url.host, url.port, url.target) == ("http", "10.0.0.5", 8080, "/in?x=1")


def test_url_parts_and_host_header() -> None:
    url = parse_webhook_url("https://Hooks.Example.com./v1/in?a=b", allow_private_networks=False)
    assert (url.host, url.port, url.target, url.host_header) == (
        "hooks.example.com", 443, "/v1/in?a=b", "hooks.example.com",
    )  # fmt: skip
    v6 = parse_webhook_url("https://[2606:4700::1111]:8443", allow_private_networks=False)
    assert (v6.target, v6.host_header) == ("/", "[2606:4700::1111]:8443")
    assert v6.ip_literal == ipaddress.ip_address("2606:4700::1111")


# --- events and description ----------------------------------------------------------


def test_the_seven_events_of_the_contract() -> None:
    assert {e.value for e in EventType} == {
        "erasure.completed", "erasure.held", "erasure.cancelled", "erasure.overdue",
        "hold.released", "hold.expired", "tenant.closure_scheduled",
    }  # fmt: skip


def test_events_are_deduplicated_in_order() -> None:
    assert parse_events(["hold.expired", "erasure.held", "hold.expired"]) == (
        EventType.HOLD_EXPIRED, EventType.ERASURE_HELD,
    )  # fmt: skip


@pytest.mark.parametrize(
    "value", [None, [], "erasure.held", ["erasure.shredded"], ["erasure.held", 7], [None]]
)
def test_unknown_or_empty_events_are_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_events(value)
    assert refused.value.field == "events"


def test_description_limit_is_500_characters() -> None:
    assert check_description("d" * MAX_DESCRIPTION_LENGTH) == "d" * 500
    assert check_description(None) is None
    for bad in ("d" * (MAX_DESCRIPTION_LENGTH + 1), 5):
        with pytest.raises(InvalidInput):
            check_description(bad)


# --- the signature, against the reference library ------------------------------------


def test_signature_and_secret_are_what_standard_webhooks_computes() -> None:
    secret = SecretBytes(bytes(range(32)))
    shown = display_webhook_secret(secret)
    assert shown == "whsec_" + base64.b64encode(bytes(range(32))).decode()
    body = encode_body("erasure.completed", NOW, {"erasure_id": "e-1"})
    timestamp = int(NOW.timestamp())
    ours = sign_webhook(secret, "msg-1", timestamp, body.encode())
    theirs = Webhook(shown).sign("msg-1", NOW, body)
    assert ours == theirs
    assert repr(secret) == "SecretBytes(<32 bytes redacted>)"


def test_the_vector_in_format_md_is_what_both_compute() -> None:
    import re
    from pathlib import Path

    import crypto

    text = (Path(crypto.__file__).parent / "FORMAT.md").read_text()
    block = re.search(r"## Webhook signatures.*?```text\n(.*?)```", text, re.S)
    assert block is not None
    fields = dict(line.split(None, 1) for line in block.group(1).splitlines())
    secret_text = fields["secret"].split()[0]
    secret = SecretBytes(base64.b64decode(secret_text.removeprefix("whsec_")))
    assert secret.reveal() == bytes(range(32))
    timestamp = int(fields["timestamp"])
    ours = sign_webhook(secret, fields["id"], timestamp, fields["body"].encode())
    theirs = Webhook(secret_text).sign(
        fields["id"], datetime.fromtimestamp(timestamp, UTC), fields["body"]
    )
    assert ours == theirs == fields["signature"]


def test_body_is_type_timestamp_and_data() -> None:
    body = json.loads(encode_body("hold.expired", NOW, {"hold_id": "h-1"}))
    assert body == {"type": "hold.expired", "timestamp": "2026-03-01T12:00:00Z",
                    "data": {"hold_id": "h-1"}}  # fmt: skip
