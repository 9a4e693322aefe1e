"""Red team 24: the client's address after this stop's change (an IPv4-mapped IPv6 address
is its IPv4 address for the access log, allowed CIDRs and trusted proxies;
vault/domain/client_ip.py `canonical`, `canonical_network`, `in_network`).

The session vault trusts X-Forwarded-For from 127.0.0.1 (tests/api/helpers.py
`from_ip`), so each request below is "a client at" the header's address.

Held: none of the other spellings of an IPv4 address (IPv4-compatible ::a.b.c.d, NAT64
64:ff9b::/96, 6to4 2002::/16, brackets, a port, leading zeros) is taken for it: a key
limited to 203.0.113.0/24 refuses them (the spellings that do not parse leave the
trusted peer as the client), and the refusal is logged under the address the walk
found; a mapped address with a zone id or in hex is its IPv4 address.

Found: rows the previous release logged for such a client carry the mapped spelling
(`::ffff:203.0.113.5`, an IPv6 inet); the `ip` filter now turns both spellings a caller
can write into the IPv4 network, which no IPv6 row overlaps, so those rows are found by
neither (only by an IPv6 network wider than the mapped range, ::/0 or ::fffe:0:0/95).
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import httpx
import pytest

import vault.http.middleware as middleware
from tests.api.helpers import access_log, auth, create_key
from tests.support import ServerThread, Tenant, bearer

XFF = "X-Forwarded-For"


@pytest.mark.parametrize(
    ("forwarded", "status", "logged"),
    [
        ("::ffff:203.0.113.5%eth0", 200, "203.0.113.5"),
        ("::FFFF:CB00:7105", 200, "203.0.113.5"),
        ("0:0:0:0:0:ffff:cb00:7105", 200, "203.0.113.5"),
        ("::203.0.113.5", 403, "::203.0.113.5"),  # IPv4-compatible: an IPv6 address
        ("64:ff9b::203.0.113.5", 403, "64:ff9b::cb00:7105"),  # NAT64
        ("2002:cb00:7105::1", 403, "2002:cb00:7105::1"),  # 6to4 of 203.0.113.5
        ("[::ffff:203.0.113.5]", 403, "127.0.0.1"),  # does not parse: the peer
        ("203.0.113.5:443", 403, "127.0.0.1"),
        ("203.000.113.005", 403, "127.0.0.1"),
        ("203.0.113.5, ::ffff:198.51.100.9", 403, "198.51.100.9"),
    ],
)
def test_held_only_the_mapped_spelling_of_an_allowed_address_passes_a_keys_cidrs(
    server: ServerThread, tenant: Tenant, forwarded: str, status: int, logged: str
) -> None:
    with server.client() as http:
        limited = create_key(http, tenant, ["compliance"], allowed_cidrs=["203.0.113.0/24"])
        officer = create_key(http, tenant, ["compliance"])
        answer = http.get("/v1/access-log", headers={**bearer(limited["secret"]), XFF: forwarded})
        rows = access_log(http, officer, api_key_id=limited["id"])
    assert answer.status_code == status, (forwarded, answer.text)
    assert [row["ip"] for row in rows] == [logged], rows


def test_a_row_logged_under_the_mapped_spelling_before_this_release_is_still_found(
    server: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack (an investigator's question): which requests came from 203.0.113.77? The
    vault ran behind a dual-stack listener before this release, which logged that client
    as ::ffff:203.0.113.77 (what `client_ip` returned then: the address as reported).

    That row is made here by the previous release's behaviour for one request (the
    middleware's `client_ip` returning the mapped address unchanged).
    Observed: `ip=203.0.113.77`, `ip=::ffff:203.0.113.77` and `ip=203.0.113.0/24` find
    only the rows written since; the older row is silently missing from the answer.
    Expected: every spelling of the address finds every row of that client (the docs:
    "an IPv4 one may be written in its ::ffff: spelling"). Fixed (red team 24 finding
    3): the search matches an IPv4 filter's mapped spelling too."""
    address = f"203.0.113.{uuid.uuid4().int % 200 + 20}"
    with server.client() as http:
        user = create_key(http, tenant, ["compliance"])
        officer = create_key(http, tenant, ["compliance"])
        with monkeypatch.context() as previous_release:
            mapped = ipaddress.ip_address(f"::ffff:{address}")
            previous_release.setattr(middleware, "client_ip", lambda *_: mapped)
            before = http.get("/v1/access-log", headers=auth(user))
        since = http.get("/v1/access-log", headers=auth(user, address))
        assert (before.status_code, since.status_code) == (200, 200)
        found: dict[str, Any] = {
            spelt: [
                row["request_id"]
                for row in access_log(http, officer, api_key_id=user["id"], ip=spelt)
            ]
            for spelt in (address, f"::ffff:{address}", "203.0.113.0/24")
        }
        everything = access_log(http, officer, api_key_id=user["id"])
    assert [row["ip"] for row in everything] == [address, f"::ffff:{address}"], everything
    wanted = [before.headers["x-request-id"], since.headers["x-request-id"]]
    assert found == {spelt: wanted[::-1] for spelt in found}, found


def test_held_a_zone_id_cannot_smuggle_text_into_the_logged_address(
    server: ServerThread, tenant: Tenant
) -> None:
    """A scoped address parses with any zone text (Python's ipaddress); the logged
    address is the address alone (PostgreSQL's inet drops the zone)."""
    with server.client() as http:
        user = create_key(http, tenant, ["compliance"])
        officer = create_key(http, tenant, ["compliance"])
        zone = "fe80::1%eth0 injected=1"
        answer = http.get("/v1/access-log", headers=httpx.Headers({**auth(user), XFF: zone}))
        rows = access_log(http, officer, api_key_id=user["id"])
    assert answer.status_code == 200, answer.text
    assert [row["ip"] for row in rows] == ["fe80::1"], rows
