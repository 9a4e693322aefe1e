"""Red team (second outside review): the two-person release of a litigation or law
enforcement hold compares the two keys' lineages, but the walk up a key's creators stops
64 keys deep (api_keys.sql `key_holder`). One admin who mints a chain of 70 admin keys,
each by the one before, holds a compliance key at its end whose walked lineage no longer
reaches the admin: with another compliance key of their own, they release the hold alone.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import auth, create_key
from tests.support import ServerThread, Tenant
from vault.db.sql import Queries

K = Queries("api_keys")

# Deeper than the lineage walk once went (api_keys.sql `key_holder` stopped at depth 64).
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


def test_the_lineage_walk_ends_on_a_cycle(server: ServerThread, tenant: Tenant) -> None:
    """The walk has no depth cap, so it must end by itself: two keys that name each other
    as creator (which the API cannot make; rows changed by hand could) are walked once
    each, and the rule still sees one lineage."""
    with server.client() as http:
        first = create_key(http, tenant, ["admin"], owner="erin")
        second = _minted_by(http, first, ["compliance"], "frank")

    async def run() -> Any:
        conn = await asyncpg.connect(server.database_url)
        try:
            await conn.execute(
                "UPDATE api_keys SET created_by = $2 WHERE tenant_id = $1 AND id = $3",
                tenant.id, uuid.UUID(second["id"]), uuid.UUID(first["id"]),
            )  # fmt: skip
            async with asyncio.timeout(10):
                return await conn.fetchrow(K.key_holder, tenant.id, uuid.UUID(first["id"]))
        finally:
            await conn.close()

    row = asyncio.run(run())
    assert sorted(map(str, row["lineage_ids"])) == sorted([first["id"], second["id"]])
    assert sorted(row["lineage_owners"]) == ["erin", "frank"]
