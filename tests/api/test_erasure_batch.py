"""The executor shreds a batch of erasures in one transaction, reading what retention
decides on for all of them at once and writing their items, ledger instructions and
status changes in one statement each (issue 19, fourth round). Each erasure in a batch
still gets exactly its own outcome: a hold, statutory retention, nothing to shred and a
plain shred side by side in one pass, none of them taking another's items."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import auth, create_key, put_record, upload
from tests.jobs import deletion_violations, run_worker_pass
from tests.support import ServerThread, make_tenant


def _keys(http: httpx.Client, vault: ServerThread) -> dict[str, Any]:
    tenant = make_tenant(vault.settings, vault.database_url)
    return {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "privacy": create_key(http, tenant, ["erasure"]),
        "officer": create_key(http, tenant, ["compliance"]),
    }


def _ledger_facts(database_url: str, erasure_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each erasure's instruction entry in the shred-ledger outbox, by erasure id."""

    async def read() -> dict[str, dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT erasure_id, fact FROM ledger_outbox"
                " WHERE key_kind = 'erasure' AND erasure_id = ANY($1::uuid[])",
                [uuid.UUID(e) for e in erasure_ids],
            )
        finally:
            await conn.close()
        return {str(row["erasure_id"]): json.loads(row["fact"]) for row in rows}

    return asyncio.run(read())


def test_one_pass_gives_each_erasure_of_a_batch_its_own_outcome(
    quiet_vault: ServerThread,
) -> None:
    vault = quiet_vault
    with vault.client() as http:
        keys = _keys(http, vault)
        app = keys["app"]
        # plain: support only, shredded; kept: billing (statutory retention) besides
        # support; held: a hold over its support; nobody: an unknown reference (nothing
        # to shred).
        for ref in ("plain", "kept", "held"):
            assert upload(http, app, ref, b"ticket " + ref.encode(), "support").is_success
        assert put_record(http, app, "kept", "invoice", b'{"eur": 1}', "billing").is_success
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": "held", "categories": ["support"],
                  "reason": "fraud_investigation", "reference": "F-1"},
            headers=auth(keys["officer"]),
        ).json()  # fmt: skip
        erasures = {
            ref: http.post(f"/v1/subjects/{ref}/erasure", headers=auth(keys["privacy"])).json()
            for ref in ("plain", "kept", "held", "nobody")
        }
        run_worker_pass(vault)  # all four due at once: one batch
        shown = {
            ref: http.get(f"/v1/erasures/{e['id']}", headers=auth(keys["privacy"])).json()
            for ref, e in erasures.items()
        }
    assert {ref: e["status"] for ref, e in shown.items()} == {
        "plain": "completed", "kept": "held", "held": "held", "nobody": "completed",
    }  # fmt: skip
    # Each subject's identity key (its sealed reference) goes with its own erasure.
    shredded = {ref: sorted(s["category"] for s in e["shredded"]) for ref, e in shown.items()}
    assert shredded == {
        "plain": ["identity", "support"], "kept": ["identity", "support"],
        "held": ["identity"], "nobody": [],
    }  # fmt: skip
    assert [r["category"] for r in shown["kept"]["retained"]] == ["billing"]
    assert shown["kept"]["held"] == [] and shown["held"]["retained"] == []
    assert shown["held"]["held"] == [{"category": "support", "hold_ids": [hold["id"]]}]
    # Every key shredded belongs to its own erasure: no two share one.
    key_ids = [s["key_id"] for e in shown.values() for s in e["shredded"]]
    assert len(key_ids) == len(set(key_ids)) == 5
    # The ledger's instruction entries carry each erasure's own items.
    facts = _ledger_facts(vault.database_url, [e["id"] for e in erasures.values()])
    outcomes = {
        ref: sorted((i["category"], i["outcome"]) for i in facts[e["id"]]["items"])
        for ref, e in erasures.items()
    }
    assert outcomes == {
        "plain": [("identity", "shredded"), ("support", "shredded")],
        "kept": [("billing", "retained"), ("identity", "shredded"), ("support", "shredded")],
        "held": [("identity", "shredded"), ("support", "held")],
        "nobody": [],
    }
    assert deletion_violations(vault) == []
