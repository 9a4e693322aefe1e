import ipaddress

import pytest

from vault.domain.client_ip import canonical_network, client_ip, in_network, mapped_spelling

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


def test_without_trusted_proxies_forwarded_for_is_ignored() -> None:
    assert str(client_ip("192.0.2.1", ["203.0.113.5"], ())) == "192.0.2.1"


def test_untrusted_peer_cannot_claim_another_address() -> None:
    assert str(client_ip("192.0.2.1", ["203.0.113.5"], PROXIES)) == "192.0.2.1"


def test_trusted_proxy_forwards_the_client_address() -> None:
    assert str(client_ip("10.1.2.3", ["203.0.113.5"], PROXIES)) == "203.0.113.5"


def test_walk_is_right_to_left_skipping_only_trusted_hops() -> None:
    # The client put a fake address first; our proxies appended the real one and theirs.
    header = ["198.51.100.66, 203.0.113.5, 10.9.9.9"]
    assert str(client_ip("10.1.2.3", header, PROXIES)) == "203.0.113.5"


def test_several_headers_are_read_as_one_list() -> None:
    assert str(client_ip("127.0.0.1", ["203.0.113.5", "10.0.0.1"], PROXIES)) == "203.0.113.5"


def test_garbled_hop_stops_at_the_last_trusted_address() -> None:
    assert str(client_ip("10.1.2.3", ["203.0.113.5, not-an-ip"], PROXIES)) == "10.1.2.3"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    assert str(client_ip("127.0.0.1", ["10.0.0.7, 10.0.0.8"], PROXIES)) == "10.0.0.7"


def test_ipv6_client_through_proxy() -> None:
    assert str(client_ip("127.0.0.1", ["2001:db8::1"], PROXIES)) == "2001:db8::1"


def test_missing_peer_is_none() -> None:
    assert client_ip(None, [], PROXIES) is None


def test_an_ipv4_client_spelt_as_a_mapped_ipv6_address_is_its_ipv4_address() -> None:
    """What the access log records, the CIDR checks compare and the throttle counts: one
    form (a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d)."""
    assert str(client_ip("::ffff:192.0.2.1", [], ())) == "192.0.2.1"
    assert str(client_ip("127.0.0.1", ["::ffff:203.0.113.5"], PROXIES)) == "203.0.113.5"


def test_a_proxy_reported_as_a_mapped_address_is_still_trusted() -> None:
    # Trusted as 10.0.0.0/8 (IPv4), it reaches us over a dual-stack socket: its header is
    # believed, so the log names the client, not the proxy.
    assert str(client_ip("::ffff:10.1.2.3", ["203.0.113.5"], PROXIES)) == "203.0.113.5"


def test_a_mapped_proxy_network_trusts_its_ipv4_proxy() -> None:
    mapped = (ipaddress.ip_network("::ffff:10.0.0.0/104"),)
    assert str(client_ip("10.1.2.3", ["203.0.113.5"], mapped)) == "203.0.113.5"
    assert str(client_ip("192.0.2.1", ["203.0.113.5"], mapped)) == "192.0.2.1"


@pytest.mark.parametrize(
    ("address", "network", "inside"),
    [
        ("198.51.100.9", "198.51.100.0/24", True),
        ("::ffff:198.51.100.9", "198.51.100.0/24", True),
        ("198.51.100.9", "::ffff:198.51.100.0/120", True),
        ("198.51.100.9", "198.51.101.0/24", False),
        ("::ffff:198.51.100.9", "::ffff:198.51.101.0/120", False),
        ("198.51.100.9", "::/0", False),  # a rule for IPv6 clients lets no IPv4 one in
        ("::ffff:198.51.100.9", "::/0", False),  # however the listener spelt it
        ("198.51.100.9", "::ffff:0:0/96", True),
        ("2001:db8::1", "198.51.100.0/24", False),
        ("2001:db8::1", "2001:db8::/32", True),
    ],
)
def test_in_network_reads_a_network_written_either_way(
    address: str, network: str, inside: bool
) -> None:
    assert in_network(ipaddress.ip_address(address), ipaddress.ip_network(network)) is inside


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:203.0.113.5/128", "203.0.113.5/32"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("::/0", "::/0"),
        ("2001:db8::/32", "2001:db8::/32"),
    ],
)
def test_a_mapped_network_is_its_ipv4_network(written: str, meant: str) -> None:
    assert canonical_network(ipaddress.ip_network(written)) == ipaddress.ip_network(meant)


def test_an_ipv4_networks_mapped_spelling_goes_back_to_it() -> None:
    for written in ("10.0.0.0/8", "203.0.113.5/32", "0.0.0.0/0"):
        network = ipaddress.IPv4Network(written)
        mapped = mapped_spelling(network)
        assert mapped is not None and canonical_network(mapped) == network
    assert mapped_spelling(ipaddress.ip_network("2001:db8::/32")) is None
