import ipaddress

from vault.domain.client_ip import client_ip

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
