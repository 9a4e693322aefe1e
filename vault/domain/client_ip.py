"""The client's IP address, the one used for logging, CIDR checks and throttling."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def canonical(address: IPAddress) -> IPAddress:
    """An IPv4 client is one address however it is spelt: an IPv4-mapped IPv6 address
    (::ffff:a.b.c.d, what a dual-stack listener or a proxy may report) is its IPv4
    address. Every use of the client's address (the access log, CIDR checks, the
    failed-auth throttle) sees this form, so they cannot disagree on who a client is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def canonical_network(network: IPNetwork) -> IPNetwork:
    """An IPv4 network written in its IPv4-mapped spelling (::ffff:10.0.0.0/104) is that
    IPv4 network (10.0.0.0/8), as `canonical` does for one address; any other network
    is itself."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        ipv4 = int(network.network_address) & 0xFFFF_FFFF
        return ipaddress.IPv4Network((ipv4, network.prefixlen - 96))
    return network


def mapped_spelling(network: IPNetwork) -> ipaddress.IPv6Network | None:
    """An IPv4 network's IPv4-mapped spelling (10.0.0.0/8: ::ffff:10.0.0.0/104), in which
    rows logged before addresses were canonical hold its clients; None for IPv6."""
    if isinstance(network, ipaddress.IPv4Network):
        mapped = int(_MAPPED.network_address) | int(network.network_address)
        return ipaddress.IPv6Network((mapped, network.prefixlen + 96))
    return None


def in_network(address: IPAddress, network: IPNetwork) -> bool:
    """`address` is in `network`, either written either way: an IPv4 client is in
    10.0.0.0/8 and in its mapped spelling ::ffff:10.0.0.0/104 alike (an operator or a
    key may have been given either). An IPv6 network wider than the mapped range (::/0)
    holds IPv6 clients only: an IPv4 client is not let in by a rule written for IPv6."""
    address, network = canonical(address), canonical_network(network)
    return address.version == network.version and address in network


def _parse(text: str) -> IPAddress | None:
    try:
        return canonical(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(in_network(address, network) for network in proxies)


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
