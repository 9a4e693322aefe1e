"""Red team (second outside review): the two-person release of a litigation or law
enforcement hold compares the two keys' lineages, but the walk up a key's creators stops
64 keys deep (api_keys.sql `key_holder`). One admin who mints a chain of 70 admin keys,
each by the one before, holds a compliance key at its end whose walked lineage no longer
reaches the admin: with another compliance key of their own, they release the hold alone.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key
from tests.support import ServerThread, Tenant

# Deeper than the lineage walk goes (api_keys.sql `key_holder`: depth < 64).
CHAIN = 70


def _minted_by(
    http: httpx.Client, creator: dict[str, Any], scopes: list[str], owner: str
) -> dict[str, Any]:
    response = http.post(
        "/v1/api-keys",
        json={"name": f"{owner}'s key", "scopes": scopes, "owner": owner},
        headers=auth(creator),
    )
    assert response.status_code == 201, response.text
    minted: dict[str, Any] = response.json()
    return minted


def _release(http: httpx.Client, hold: dict[str, Any], key: dict[str, Any]) -> httpx.Response:
    return http.post(
        f"/v1/holds/{hold['id']}/release", json={"reason": "case closed"}, headers=auth(key)
    )


@pytest.mark.xfail(
    strict=True,
    reason="red team: the lineage walk stops 64 keys deep, so one admin's long key chain "
    "looks like a second person and releases a litigation hold alone",
)
def test_a_key_chain_deeper_than_the_lineage_walk_is_still_one_person(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        asking = create_key(http, tenant, ["compliance"], owner="carol")
        # Every key below descends from the tenant's one admin key, whose holder saw
        # every secret; the owners are whatever that holder chose to write.
        creator: dict[str, Any] = {"secret": tenant.admin_key}
        for depth in range(CHAIN):
            creator = _minted_by(http, creator, ["admin"], f"officer-{depth}")
        confirming = _minted_by(http, creator, ["compliance"], "dave")
        placed = http.post(
            "/v1/holds",
            json={"reason": "litigation", "reference": "CASE-64"},
            headers=auth(asking),
        )
        assert placed.status_code == 201, placed.text
        hold = placed.json()
        asked = _release(http, hold, asking)
        confirmed = _release(http, hold, confirming)
        shown = http.get(f"/v1/holds/{hold['id']}", headers=auth(asking)).json()
    assert asked.status_code == 202, asked.text
    assert confirmed.status_code == 409, confirmed.text
    assert shown["released_at"] is None and shown["active"]


def test_a_short_key_chain_is_one_person(server: ServerThread, tenant: Tenant) -> None:
    """The negative beside it: the same chain three keys deep is refused today."""
    with server.client() as http:
        asking = create_key(http, tenant, ["compliance"], owner="carol")
        creator: dict[str, Any] = {"secret": tenant.admin_key}
        for depth in range(3):
            creator = _minted_by(http, creator, ["admin"], f"officer-{depth}")
        confirming = _minted_by(http, creator, ["compliance"], "dave")
        hold = http.post(
            "/v1/holds",
            json={"reason": "litigation", "reference": "CASE-3"},
            headers=auth(asking),
        ).json()
        asked = _release(http, hold, asking)
        confirmed = _release(http, hold, confirming)
    assert asked.status_code == 202, asked.text
    assert confirmed.status_code == 409, confirmed.text
