"""Red team 21: the failed-auth throttle keyed by an IPv6 client's /64 (vault/domain/
throttle.py throttled_client), attacked. What held (regression tests).

Two customers behind one shared-hosting /64 share one budget: an attacker there spending
it turns the neighbour's *failing* attempts into 429s, but never a valid key's request
(the throttle is consulted only on failure), so it is no lock-out. The "unknown" client
(no peer address) cannot be reached from outside: a peer always has an address over TCP,
and X-Forwarded-For from an untrusted peer is ignored.

The session server trusts X-Forwarded-For from 127.0.0.1 (tests/api/helpers.py
`from_ip`) and throttles after 5 failures per 60 s (tests/conftest.py)."""

from __future__ import annotations

import ipaddress
import secrets

import httpx

from tests.api.helpers import auth, create_key, from_ip
from tests.support import ServerThread, Tenant, bearer
from vault.domain.client_ip import client_ip
from vault.domain.throttle import throttled_client


def _bad_key() -> str:
    return f"dv_{'q' * 12}_{secrets.token_urlsafe(32)}"


def _fail_from(http: httpx.Client, ip: str) -> int:
    return http.get("/v1/api-keys", headers={**bearer(_bad_key()), **from_ip(ip)}).status_code


def test_held_a_neighbour_in_a_spent_64_keeps_working_with_a_valid_key(
    server: ServerThread, tenant: Tenant
) -> None:
    block = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    with server.client() as http:
        key = create_key(http, tenant, ["compliance"], owner="rt21 neighbour")
        spent = [_fail_from(http, f"{block}::bad") for _ in range(6)]
        neighbour = http.get("/v1/access-log", headers={**auth(key), **from_ip(f"{block}::900d")})
        neighbour_wrong = _fail_from(http, f"{block}::900d")
    assert spent == [401] * 5 + [429], spent
    assert neighbour.status_code == 200, neighbour.text
    assert neighbour_wrong == 429  # its failing attempts share the budget: accepted


def test_held_a_scoped_link_local_address_in_the_header_is_no_500(server: ServerThread) -> None:
    """fe80::1%eth0 parses with its zone; its /64 is computed without it."""
    with server.client() as http:
        answers = {_fail_from(http, f"fe80::{secrets.randbelow(0xFFFF):x}%eth9") for _ in range(3)}
    assert answers <= {401, 429}, answers


def test_held_xff_from_an_untrusted_or_missing_peer_is_ignored() -> None:
    trusted = [ipaddress.ip_network("127.0.0.1/32")]
    assert client_ip("203.0.113.7", ["198.51.100.1"], trusted) == ipaddress.ip_address(
        "203.0.113.7"
    )
    # no peer (a unix socket): the header is not believed, the client is the shared one
    assert client_ip(None, ["198.51.100.1"], trusted) is None
    assert throttled_client(None) == "unknown"
    # a garbled hop behind the trusted proxy stops the walk at the proxy, never at None
    assert client_ip("127.0.0.1", ["not-an-ip"], trusted) == ipaddress.ip_address("127.0.0.1")
