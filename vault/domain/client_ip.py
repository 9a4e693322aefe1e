"""The client's IP address, the one used for logging, CIDR checks and throttling."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """X-Forwarded-For is believed only as far as it was written by our own proxies.

    Walk from the right (the hop nearest us) and skip only configured trusted proxies;
    the first address that is not one is the client. A header from an untrusted peer is
    ignored entirely, and a garbled entry stops the walk at the last hop we trust.
    """
    current = _parse(peer) if peer else None
    if current is None or not _trusted(current, trusted_proxies):
        return current
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            return current
        current = address
        if not _trusted(current, trusted_proxies):
            return current
    return current
