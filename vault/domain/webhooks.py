"""Webhook rules that need no database or network: the event types, the limits, the retry
schedule, and what a destination URL may be."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from vault.errors import InvalidInput


class EventType(StrEnum):
    """API.md "Webhooks": the events a tenant may subscribe to."""

    ERASURE_COMPLETED = "erasure.completed"
    ERASURE_HELD = "erasure.held"
    ERASURE_CANCELLED = "erasure.cancelled"
    ERASURE_OVERDUE = "erasure.overdue"
    HOLD_RELEASED = "hold.released"
    HOLD_EXPIRED = "hold.expired"
    TENANT_CLOSURE_SCHEDULED = "tenant.closure_scheduled"


# What `POST /v1/webhooks/{id}/test` sends: to that endpoint only, whatever it subscribed to.
TEST_EVENT_TYPE = "webhook.test"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued, or waiting for its next attempt
    DELIVERED = "delivered"  # a 2xx answer within the timeout
    FAILED = "failed"  # the retry schedule ran out; `retry` queues it again
    CANCELLED = "cancelled"  # its endpoint was deleted before it was delivered


class AttemptOutcome(StrEnum):
    """One attempt's result: fixed values, so a metric label or a log field never carries
    text a receiver chose."""

    DELIVERED = "delivered"  # 2xx
    HTTP_ERROR = "http_error"  # any other status (3xx included: redirects are not followed)
    TIMEOUT = "timeout"  # no answer within DELIVERY_TIMEOUT_SECONDS
    CONNECTION_FAILED = "connection_failed"  # refused, reset, unreachable, TLS failure
    PROTOCOL_ERROR = "protocol_error"  # the answer was not HTTP/1.1 we could read
    DNS_FAILED = "dns_failed"  # the host name did not resolve
    DESTINATION_REFUSED = "destination_refused"  # resolved to a private address (rebinding)
    # The tenant's keys are destroyed (a closed tenant): nothing can be signed.
    SECRET_UNAVAILABLE = "secret_unavailable"  # noqa: S105 (an outcome, not a secret)


# Safety limits, each refused at its edge (README "Webhooks").
# Browsers and most proxies cap URLs near 2 KiB; a receiver needs far less.
MAX_URL_LENGTH = 2048
# Every live endpoint costs one delivery row per event: a bound on the fan-out.
MAX_WEBHOOKS_PER_TENANT = 20
MAX_DESCRIPTION_LENGTH = 500
# API.md: any 2xx within 10 s is success; DNS, connecting, TLS and the answer's head all
# count against it.
DELIVERY_TIMEOUT_SECONDS = 10.0
# The longest answer head read before the status line and headers are parsed (h11).
MAX_RESPONSE_HEAD_BYTES = 16 * 1024
# Delivered, failed and cancelled deliveries (and their attempts) are kept this long
# for the delivery log and its replay, then deleted; pending ones are never deleted.
DELIVERY_LOG_DAYS = 30
# The most recent attempts shown with each delivery in the delivery log.
ATTEMPTS_SHOWN = 20

# API.md: retried with backoff for at least 24 hours. The pause after the n-th failed
# attempt; after the last one the delivery is given up (FAILED). 5 s + 5 min + 30 min +
# 2 h + 5 h + 10 h + 10 h = 27 h 35 min 5 s from the first attempt to the eighth and last.
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1


def next_attempt_at(failures: int, now: datetime) -> datetime | None:
    """When to try again after `failures` failed attempts in a row (the latest just now);
    None: the schedule has run out and the delivery is given up."""
    if failures < 1:
        raise ValueError("next_attempt_at is asked after a failed attempt")
    if failures > len(RETRY_DELAYS):
        return None
    return now + RETRY_DELAYS[failures - 1]


@dataclass(frozen=True)
class WebhookUrl:
    """A destination the vault may post to: scheme, host (a name or an IP literal), port
    and the request target (path and query) to send."""

    text: str
    scheme: str
    host: str
    port: int
    target: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def ip_literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_webhook_url(value: object, *, allow_private_networks: bool) -> WebhookUrl:
    """An absolute https URL (http too where the deployment lets webhooks reach its own
    networks: a receiver there often has no TLS of its own), with no credentials and no
    fragment, at most MAX_URL_LENGTH characters. Where the host may point is checked
    separately (vault/domain/webhook_destinations.py), at registration and at every
    delivery."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("url is required: the https URL to post events to", field="url")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidInput(f"url must be at most {MAX_URL_LENGTH} characters", field="url")
    if not value.isascii() or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidInput(
            "url must be ASCII without spaces (percent-encode the rest; use punycode "
            "for international domain names)",
            field="url",
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidInput("url is not a valid URL", field="url") from None
    schemes = ("https", "http") if allow_private_networks else ("https",)
    if parts.scheme not in schemes:
        raise InvalidInput(
            "url must be https://" if not allow_private_networks else "url must be http(s)://",
            field="url",
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "url must not carry credentials: receivers verify the webhook-signature header",
            field="url",
        )
    if parts.fragment or value.endswith("#"):
        raise InvalidInput("url must not have a fragment (#...)", field="url")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput("url needs a host", field="url")
    if port == 0:
        raise InvalidInput("url: port 0 is not a port anything listens on", field="url")
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    default_port = 443 if parts.scheme == "https" else 80
    return WebhookUrl(value, parts.scheme, host, port or default_port, target)


def parse_events(value: object) -> tuple[EventType, ...]:
    """A non-empty list of known event types; repeats are dropped, the order kept."""
    if not isinstance(value, list) or not value:
        raise InvalidInput(_events_message("events must be a non-empty list"), field="events")
    try:
        events = [EventType(str(item)) for item in value if isinstance(item, str)]
    except ValueError:
        raise InvalidInput(
            _events_message("events holds an unknown type"), field="events"
        ) from None
    if len(events) != len(value):
        raise InvalidInput(_events_message("events must be a list of strings"), field="events")
    return tuple(dict.fromkeys(events))


def _events_message(start: str) -> str:
    return f"{start}; known: {', '.join(EventType)}"


def check_description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f"description must be a string of at most {MAX_DESCRIPTION_LENGTH} characters",
            field="description",
        )
    return value
