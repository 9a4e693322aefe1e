"""Posting one webhook: resolve the host, check every address it resolved to, connect to
the address that was checked (never a second lookup: DNS rebinding), send the signed
request over HTTP/1.1 (h11 frames it) and read the answer's status line.

The whole attempt, DNS included, has DELIVERY_TIMEOUT_SECONDS; any 2xx in that time is
success. Redirects are not followed (a 3xx is a failed attempt): following one would
send the event to a destination nobody checked. The answer's body is never read, and
nothing the receiver sends reaches a log or the delivery log but its status code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11

from vault.domain.webhook_destinations import IPAddress, refused_addresses
from vault.domain.webhooks import (
    DELIVERY_TIMEOUT_SECONDS,
    MAX_RESPONSE_HEAD_BYTES,
    AttemptOutcome,
    WebhookUrl,
)
from vault.version import distribution_version

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class ResolutionFailed(Exception):
    """The host name did not resolve (or not in time)."""


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is itself), in the resolver's order."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:
        raise ResolutionFailed(type(exc).__name__) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ResolutionFailed("no addresses")
    return addresses


@dataclass(frozen=True)
class AttemptResult:
    outcome: AttemptOutcome
    response_code: int | None
    duration_ms: int


class WebhookSender:
    """`resolver` and `tls` are the seams tests use (a name that resolves differently
    later; a private CA); `timeout_seconds` too, to test a receiver that never answers
    without waiting 10 s."""

    def __init__(
        self,
        *,
        allow_private_networks: bool,
        resolver: Resolver = resolve_host,
        tls: ssl.SSLContext | None = None,
        timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        self.allow_private_networks = allow_private_networks
        self._resolver = resolver
        self._tls = tls
        self._timeout = timeout_seconds
        self._user_agent = f"datavault-webhooks/{distribution_version()}"

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # The system's trust store, hostname checked: created on first https use.
            self._tls = ssl.create_default_context()
        return self._tls

    async def post(self, url: WebhookUrl, headers: dict[str, str], body: bytes) -> AttemptResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                outcome, code = await self._attempt(url, headers, body)
        except TimeoutError:
            outcome, code = AttemptOutcome.TIMEOUT, None
        return AttemptResult(outcome, code, int((time.monotonic() - started) * 1000))

    async def _attempt(
        self, url: WebhookUrl, headers: dict[str, str], body: bytes
    ) -> tuple[AttemptOutcome, int | None]:
        try:
            addresses = await self._resolver(url.host, url.port)
        except ResolutionFailed:
            return AttemptOutcome.DNS_FAILED, None
        if refused_addresses(addresses, allow_private=self.allow_private_networks):
            return AttemptOutcome.DESTINATION_REFUSED, None
        connected = await self._connect(addresses, url)
        if connected is None:
            return AttemptOutcome.CONNECTION_FAILED, None
        reader, writer = connected
        try:
            return await self._exchange(reader, writer, url, headers, body)
        except (OSError, ssl.SSLError, ConnectionError):
            return AttemptOutcome.CONNECTION_FAILED, None
        except h11.ProtocolError:
            return AttemptOutcome.PROTOCOL_ERROR, None
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # ssl.SSLError included
                await writer.wait_closed()

    async def _connect(
        self, addresses: list[IPAddress], url: WebhookUrl
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the first of the checked addresses that takes one; TLS names
        the URL's host (SNI, certificate check), whichever address answered."""
        https = url.scheme == "https"
        for address in addresses:
            try:
                return await asyncio.open_connection(
                    str(address),
                    url.port,
                    ssl=self._tls_context() if https else None,
                    server_hostname=url.host if https else None,
                )
            except OSError:  # ssl.SSLError included
                continue
        return None

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: WebhookUrl,
        headers: dict[str, str], body: bytes,
    ) -> tuple[AttemptOutcome, int | None]:  # fmt: skip
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD_BYTES)
        request_headers = [
            ("Host", url.host_header),
            ("User-Agent", self._user_agent),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *headers.items(),
        ]
        writer.write(
            connection.send(h11.Request(method="POST", target=url.target, headers=request_headers))
            + connection.send(h11.Data(data=body))
            + connection.send(h11.EndOfMessage())
        )
        await writer.drain()
        received = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                if received > MAX_RESPONSE_HEAD_BYTES:
                    return AttemptOutcome.PROTOCOL_ERROR, None  # a head too long to read
                # Never more than one byte past the limit: h11's own bound is checked
                # only between reads, so a large read could carry a longer head through.
                chunk = await reader.read(min(8192, MAX_RESPONSE_HEAD_BYTES + 1 - received))
                received += len(chunk)
                connection.receive_data(chunk)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and the like: the answer follows
            if isinstance(event, h11.Response):
                code = int(event.status_code)
                if 200 <= code < 300:
                    return AttemptOutcome.DELIVERED, code
                return AttemptOutcome.HTTP_ERROR, code
            # The receiver closed the connection before answering.
            return AttemptOutcome.CONNECTION_FAILED, None
