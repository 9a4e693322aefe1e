"""`datavault audit verify` finds a changed, removed, reordered, cut-off or rewritten
disclosure, as it does an access-log row; the anchors carry the disclosure chain's head;
an erasure shreds a description and the chain still verifies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, put_record, subject_url
from tests.integration.test_audit_chain import (
    _audit_verify,
    _history,
    _newest_anchor_path,
    _publish_anchors,
)
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant
from vault.config import Settings
from vault.domain.access_chain import GENESIS
from vault.domain.disclosures import ChainedDisclosure, disclosure_hash

ENTRIES = 4


def _disclose(http: Any, officer: dict[str, Any], ref: str, n: int) -> dict[str, Any]:
    created = http.post(
        "/v1/disclosures",
        json={"subject_ref": ref, "recipient": f"Recipient {n}", "legal_basis": "court order",
              "reference": f"CASE-{n}", "categories": ["account"],
              "disclosed_at": f"2024-05-0{n}T10:00:00Z", "description": f"item {n}"},
        headers=auth(officer),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


@pytest.fixture
def disclosed_tenant(server: ServerThread, tenant: Tenant) -> Tenant:
    with server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        officer = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, "chain-subject", "profile", b"{}").status_code == 201
        for n in range(1, ENTRIES + 1):
            _disclose(http, officer, "chain-subject", n)
    return tenant


def _as_owner(database_url: str, *statements: str) -> None:
    """Run as the tables' owner with the append-only trigger off, as a tamperer who owns
    the database can."""

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute("ALTER TABLE disclosures DISABLE TRIGGER USER")
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("ALTER TABLE disclosures ENABLE TRIGGER USER")
        finally:
            await conn.close()

    asyncio.run(run())


def _verify(database_url: str, data_dir: Path, tenant: Tenant) -> tuple[int, str]:
    result = _audit_verify(database_url, data_dir, "--tenant", tenant.slug)
    return result.returncode, result.stdout + result.stderr


def test_an_untouched_disclosure_chain_verifies(
    database_url: str, data_dir: Path, disclosed_tenant: Tenant
) -> None:
    result = _audit_verify(database_url, data_dir, "--tenant", disclosed_tenant.slug, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    (chain,) = json.loads(result.stdout)["chains"]
    assert (chain["disclosures"], chain["first_bad_disclosure"]) == (ENTRIES, None)


def test_a_changed_disclosure_is_named(
    database_url: str, data_dir: Path, disclosed_tenant: Tenant
) -> None:
    _as_owner(
        database_url,
        f"UPDATE disclosures SET recipient = 'someone else' "
        f"WHERE tenant_id = '{disclosed_tenant.id}' AND seq = 2",
    )
    code, output = _verify(database_url, data_dir, disclosed_tenant)
    assert code == 1
    assert "BROKEN at disclosure 2" in output and "changed" in output


def test_a_removed_disclosure_is_named(
    database_url: str, data_dir: Path, disclosed_tenant: Tenant
) -> None:
    _as_owner(
        database_url,
        f"DELETE FROM disclosures WHERE tenant_id = '{disclosed_tenant.id}' AND seq = 2",
    )
    code, output = _verify(database_url, data_dir, disclosed_tenant)
    assert code == 1
    assert "BROKEN at disclosure 2" in output and "missing" in output


def test_a_cut_tail_with_a_consistent_head_is_caught_by_the_anchor(
    settings: Settings, database_url: str, data_dir: Path, disclosed_tenant: Tenant
) -> None:
    _publish_anchors(settings, database_url)
    anchor = json.loads(_newest_anchor_path(data_dir, disclosed_tenant).read_bytes())
    assert (anchor["v"], anchor["disclosures_seq"]) == (4, ENTRIES)
    where = f"tenant_id = '{disclosed_tenant.id}'"
    _as_owner(
        database_url,
        f"DELETE FROM disclosures WHERE {where} AND seq = {ENTRIES}",
        f"UPDATE disclosure_heads h SET seq = {ENTRIES - 1}, row_hash = d.row_hash "
        f"FROM disclosures d WHERE h.{where} AND d.{where} AND d.seq = {ENTRIES - 1}",
    )
    code, output = _verify(database_url, data_dir, disclosed_tenant)
    assert code == 1
    assert f"BROKEN at disclosure {ENTRIES}" in output and "cut off" in output
    # The job does not anchor a chain that contradicts its anchors.
    before = [path.read_bytes() for path in _history(data_dir, disclosed_tenant)]
    _publish_anchors(settings, database_url)
    assert [path.read_bytes() for path in _history(data_dir, disclosed_tenant)] == before


def test_a_rewritten_chain_with_recomputed_hashes_is_caught_by_the_anchor(
    settings: Settings, database_url: str, data_dir: Path, disclosed_tenant: Tenant
) -> None:
    assert _publish_anchors(settings, database_url) >= 1

    async def rewrite() -> None:
        """Change entry 1's recipient and recompute every hash and the head: consistent
        in itself, as anyone with the table (not the anchor key) can make it."""
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute("ALTER TABLE disclosures DISABLE TRIGGER USER")
                rows = await conn.fetch(
                    "SELECT * FROM disclosures WHERE tenant_id = $1 ORDER BY seq",
                    disclosed_tenant.id,
                )
                prev = GENESIS
                for row in rows:
                    recipient = "nobody" if row["seq"] == 1 else row["recipient"]
                    fields = ChainedDisclosure(**{
                        **{name: row[name] for name in ChainedDisclosure.__dataclass_fields__},
                        "recipient": recipient, "categories": tuple(row["categories"]),
                    })  # fmt: skip
                    current = disclosure_hash(prev, fields)
                    await conn.execute(
                        "UPDATE disclosures SET recipient = $3, prev_hash = $4, row_hash = $5"
                        " WHERE tenant_id = $1 AND seq = $2",
                        disclosed_tenant.id, row["seq"], recipient, prev, current,
                    )  # fmt: skip
                    prev = current
                await conn.execute(
                    "UPDATE disclosure_heads SET row_hash = $2 WHERE tenant_id = $1",
                    disclosed_tenant.id,
                    prev,
                )
                await conn.execute("ALTER TABLE disclosures ENABLE TRIGGER USER")
        finally:
            await conn.close()

    asyncio.run(rewrite())
    code, output = _verify(database_url, data_dir, disclosed_tenant)
    assert code == 1
    assert f"BROKEN at disclosure {ENTRIES}" in output and "rewritten" in output


def test_a_shredded_description_leaves_the_chain_verifiable(quiet_vault: ServerThread) -> None:
    vault = quiet_vault
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest"])
        officer = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, app, "chain-erased", "profile", b"{}").status_code == 201
        entry = _disclose(http, officer, "chain-erased", 1)
        erasure = http.post(subject_url("chain-erased", "erasure"), headers=auth(privacy))
        assert erasure.status_code == 202
        run_worker_pass(vault)
        after = http.get(f"/v1/disclosures/{entry['id']}", headers=auth(officer)).json()
    assert after["description_erased"] is True
    _publish_anchors(vault.settings, vault.database_url)
    result = _audit_verify(vault.database_url, vault.settings.data_dir, "--tenant", tenant.slug)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 disclosures ok" in result.stdout


def test_a_description_moved_to_another_entry_does_not_open(
    server: ServerThread, database_url: str, data_dir: Path, disclosed_tenant: Tenant
) -> None:
    """Entries 1 and 2 are sealed under the same subject's key; each is bound to its own
    disclosure, so a description copied into another entry is an integrity failure,
    never the other entry's text (and the chain shows the change)."""
    where = f"tenant_id = '{disclosed_tenant.id}'"
    _as_owner(
        database_url,
        f"UPDATE disclosures d SET description_sealed = s.description_sealed "
        f"FROM disclosures s WHERE d.{where} AND s.{where} AND d.seq = 2 AND s.seq = 1",
    )
    with server.client() as http:
        officer = create_key(http, disclosed_tenant, ["compliance"])
        entries = http.get(
            "/v1/disclosures", params={"subject_ref": "chain-subject", "limit": 1,
                                       "until": "2024-05-03T00:00:00Z"},
            headers=auth(officer),
        )  # fmt: skip
    assert entries.status_code == 500, entries.text
    assert entries.json()["type"].endswith("/integrity")
    assert "item 1" not in entries.text
    code, output = _verify(database_url, data_dir, disclosed_tenant)
    assert code == 1 and "BROKEN at disclosure 2" in output
