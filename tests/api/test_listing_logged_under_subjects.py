"""An answer that carries data of several subjects is found under each of them in the
access log (vault/http/listed_subjects.py): a listing of disclosures without subject_ref,
or under a tenant-wide hold, has its own row (status and bytes, no subject) and one
further row per listed subject with the same request id and 0 bytes. A listing filtered
to one subject keeps exactly its one row. The rows carry the keyed hash, never a
reference."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import access_log, auth, create_key, put_record, rfc3339, wait_for
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant


def _disclose(
    http: httpx.Client, officer: dict[str, Any], ref: str | None, **fields: Any
) -> dict[str, Any]:
    body = {
        "recipient": "Belastingdienst", "legal_basis": "Art. 53 AWR", "reference": "BD-7",
        "categories": ["account"], "disclosed_at": rfc3339(datetime.now(UTC)),
        "description": f"handed over {uuid.uuid4().hex}", **fields,
    }  # fmt: skip
    if ref is not None:
        body["subject_ref"] = ref
    else:
        del body["description"]  # a description needs a subject's keys
    recorded = http.post("/v1/disclosures", json=body, headers=auth(officer))
    assert recorded.status_code == 201, recorded.text
    result: dict[str, Any] = recorded.json()
    return result


def _rows_of(database_url: str, tenant: Tenant, request_id: str) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)  # the owner: no row-level security
        try:
            rows = await conn.fetch(
                "SELECT * FROM access_log WHERE tenant_id = $1 AND request_id = $2 ORDER BY seq",
                tenant.id, request_id,
            )  # fmt: skip
        finally:
            await conn.close()
        return [dict(row) for row in rows]

    return asyncio.run(run())


def _request_ids_about(http: httpx.Client, officer: dict[str, Any], ref: str) -> set[str]:
    return {row["request_id"] for row in access_log(http, officer, subject_ref=ref)}


def test_a_listing_across_subjects_is_found_under_each_and_a_filtered_one_under_its_own(
    quiet_vault: ServerThread,
) -> None:
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    refs = [f"across-{n}-{uuid.uuid4().hex[:8]}" for n in range(3)]
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest"])
        officer = create_key(http, tenant, ["compliance"])
        hashes = {}
        for ref in refs:
            assert put_record(http, app, ref, "profile", b"{}").status_code == 201
            hashes[ref] = _disclose(http, officer, ref)["subject_ref_hash"]
        _disclose(http, officer, refs[0])  # a second entry of one subject: still one row
        _disclose(http, officer, None)  # no subject named: no row for it

        listing_id, filtered_id = f"all-{uuid.uuid4().hex}", f"one-{uuid.uuid4().hex}"
        listing = http.get("/v1/disclosures", headers={**auth(officer), "X-Request-Id": listing_id})
        assert listing.status_code == 200, listing.text
        assert len(listing.json()["items"]) == 5
        filtered = http.get(
            "/v1/disclosures", params={"subject_ref": refs[1]},
            headers={**auth(officer), "X-Request-Id": filtered_id},
        )  # fmt: skip
        assert filtered.status_code == 200 and len(filtered.json()["items"]) == 1

        assert wait_for(lambda: listing_id in _request_ids_about(http, officer, refs[2]))
        for ref in refs:
            assert listing_id in _request_ids_about(http, officer, ref), ref
        assert filtered_id in _request_ids_about(http, officer, refs[1])
        assert filtered_id not in _request_ids_about(http, officer, refs[0])

    # The listing: its own row first (what moved, no subject), then one row per distinct
    # subject in the page's order, consecutive in the chain, 0 bytes, the same status.
    own, *per_subject = _rows_of(quiet_vault.database_url, tenant, listing_id)
    assert own["subject_ref_hash"] is None and own["bytes_out"] == len(listing.content)
    in_page_order = [item["subject_ref_hash"] for item in listing.json()["items"]]
    assert [bytes(r["subject_ref_hash"]).hex() for r in per_subject] == list(
        dict.fromkeys(h for h in in_page_order if h is not None)
    )
    assert sorted(bytes(r["subject_ref_hash"]).hex() for r in per_subject) == sorted(
        hashes.values()
    )
    assert [r["seq"] for r in per_subject] == list(range(own["seq"] + 1, own["seq"] + 4))
    for row in per_subject:
        assert (row["status"], row["bytes_in"], row["bytes_out"]) == (200, 0, 0)
        assert (row["route"], row["method"], row["api_key_id"], row["artefact_id"]) == (
            own["route"], own["method"], own["api_key_id"], None,
        )  # fmt: skip
    # The filtered listing: exactly its one row, naming its subject.
    (only,) = _rows_of(quiet_vault.database_url, tenant, filtered_id)
    assert bytes(only["subject_ref_hash"]).hex() == hashes[refs[1]]
    everything = " ".join(
        str(value) for row in _rows_of(quiet_vault.database_url, tenant, listing_id)
        for value in row.values()
    )  # fmt: skip
    assert not any(ref in everything for ref in refs)


def test_a_listing_under_a_tenant_wide_hold_is_found_under_each_subject_it_listed(
    quiet_vault: ServerThread,
) -> None:
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    refs = [f"held-{n}-{uuid.uuid4().hex[:8]}" for n in range(2)]
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest"])
        officer = create_key(http, tenant, ["compliance"])
        hold = http.post(
            "/v1/holds", json={"reason": "litigation", "reference": "CASE-9"},
            headers=auth(officer),
        )  # fmt: skip
        assert hold.status_code == 201, hold.text
        for ref in refs:
            assert put_record(http, app, ref, "profile", b"{}").status_code == 201
            _disclose(http, officer, ref, hold_id=hold.json()["id"])
        other = f"elsewhere-{uuid.uuid4().hex[:8]}"  # disclosed, but not under this hold
        assert put_record(http, app, other, "profile", b"{}").status_code == 201
        _disclose(http, officer, other)
        listing_id = f"hold-{uuid.uuid4().hex}"
        listing = http.get(
            "/v1/disclosures", params={"hold_id": hold.json()["id"]},
            headers={**auth(officer), "X-Request-Id": listing_id},
        )  # fmt: skip
        assert listing.status_code == 200 and len(listing.json()["items"]) == 2
        assert wait_for(lambda: listing_id in _request_ids_about(http, officer, refs[0]))
        assert listing_id in _request_ids_about(http, officer, refs[1])
        assert listing_id not in _request_ids_about(http, officer, other)
    assert len(_rows_of(quiet_vault.database_url, tenant, listing_id)) == 3


def test_a_listing_after_an_erasure_is_not_logged_under_the_erased_subject(
    quiet_vault: ServerThread,
) -> None:
    """Runbook step 4 ("nobody read it afterwards"): the erased subject's entry is still
    listed, with only its hash (nothing of the subject's is opened), so the listing gets
    no row under it; the subject still alive beside it gets its row."""
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    erased, alive = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("erased", "alive"))
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest"])
        officer = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        for ref in (erased, alive):
            assert put_record(http, app, ref, "profile", b"{}").status_code == 201
            _disclose(http, officer, ref)
        erasure = http.post(f"/v1/subjects/{erased}/erasure", headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(quiet_vault)
        done = http.get(f"/v1/erasures/{erasure.json()['id']}", headers=auth(privacy))
        assert done.json()["status"] == "completed", done.text
        listing_id = f"after-{uuid.uuid4().hex}"
        listing = http.get("/v1/disclosures", headers={**auth(officer), "X-Request-Id": listing_id})
        items = {item["subject_ref"]: item for item in listing.json()["items"]}
        assert set(items) == {None, alive}  # the erased entry: its hash only
        assert wait_for(lambda: listing_id in _request_ids_about(http, officer, alive))
        assert listing_id not in _request_ids_about(http, officer, erased)
    assert len(_rows_of(quiet_vault.database_url, tenant, listing_id)) == 2
