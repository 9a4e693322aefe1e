"""Which addresses a webhook may reach (DESIGN.md, "Events for tenants": destinations in
private, loopback and link-local ranges are refused unless the deployment allows them).

A tenant names the URL, the vault makes the request: without this rule a tenant could make
the vault post into the deployment's own network (the cloud metadata service at
169.254.169.254, a database's HTTP port, an admin interface on 127.0.0.1). The rule is
applied to every address a host name resolves to, at registration and again right before
each delivery, and the delivery connects to the address it checked, so a name that
resolves to a public address when registered and to a private one later (DNS rebinding)
is refused too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address in their low 32 bits: NAT64 (RFC 6052, the
# well-known prefix and the local-use one of RFC 8215). Python counts them as global, but
# a NAT64 gateway turns 64:ff9b::7f00:1 into 127.0.0.1.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def is_public_address(address: IPAddress) -> bool:
    """A globally routable unicast address: not private (RFC 1918, fc00::/7), loopback,
    link-local, shared (100.64.0.0/10), reserved, documentation, unspecified or multicast,
    and not an IPv6 form of such an IPv4 address (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refused_addresses(addresses: Iterable[IPAddress], *, allow_private: bool) -> list[IPAddress]:
    """The addresses a delivery may not reach (none when the deployment allows private
    networks). A host with one refused address among public ones is refused as a whole:
    which address a client would pick is not ours to predict."""
    if allow_private:
        return []
    return [address for address in addresses if not is_public_address(address)]
