"""Red team (second outside review): a restored backup forgets an erasure that keeps
something. The shred ledger re-destroys every key the erasure destroyed, but what it kept
(statutory retention, a hold) is recorded nowhere outside PostgreSQL: after the restore
the erasure is unknown (404), the kept data is ordinary live data again, readable by the
application's read scope, and nothing will ever shred it. `datavault check deletion`
passes, since no erasure names that generation any more.

The same holds for a legal hold placed after the backup: the restore removes it without
the two people its release takes, and the data it kept can be deleted at once.

Steps (default settings: billing is kept at least 7 years): write a billing record, take
a pg_dump, erase the subject (held: billing retained; its reference copy shredded),
restore the dump, start the vault. Observed: the read key reads the billing record (200;
it was 403 before the restore) and the erasure answers 404.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import auth, create_key
from tests.jobs import deletion_violations, run_worker_pass
from tests.support import ServerThread, empty_database, make_tenant, running_server
from vault.config import Settings
from vault.db.embedded import postgres_bin_dir

PG_BIN = postgres_bin_dir()


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _held(
    server: ServerThread, http: httpx.Client, privacy: dict[str, Any], erasure_id: str
) -> dict[str, Any]:
    run_worker_pass(server)  # the executor and the publisher: the erasure is carried out
    shown: dict[str, Any] = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
    assert shown["status"] == "held", shown
    return shown


def test_what_an_erasure_kept_stays_compliance_only_after_a_backup_is_restored(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "before-erasure.dump"
    with running_server(private_vault, url) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        written = http.put(
            "/v1/subjects/payer/records/invoice?category=billing",
            json={"iban": "DE00 1234"},
            headers=auth(app),
        )
        assert written.status_code == 201, written.text
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        erasure = http.post("/v1/subjects/payer/erasure", headers=auth(privacy)).json()
        held = _held(server, http, privacy, erasure["id"])
        before = http.get("/v1/subjects/payer/records/invoice", headers=auth(app))
    assert [r["category"] for r in held["retained"]] == ["billing"]
    assert before.status_code == 403  # kept by statute: compliance only

    # The operator restores the backup taken before the erasure.
    restored_url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", restored_url, str(dump))
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url) as server, server.client() as http:
        after = http.get("/v1/subjects/payer/records/invoice", headers=auth(app))
        erasure_after = http.get(f"/v1/erasures/{erasure['id']}", headers=auth(privacy))
        violations = deletion_violations(server)
    assert after.status_code == 403, after.text
    assert erasure_after.status_code == 200 and erasure_after.json()["status"] == "held"
    assert violations == []


def test_a_legal_hold_survives_a_backup_restore(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "before-hold.dump"
    with running_server(private_vault, url) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        compliance = create_key(http, tenant, ["compliance"])
        stored = http.post(
            "/v1/subjects/defendant/artefacts?category=recording",
            content=b"the call in dispute",
            headers=auth(app),
        )
        assert stored.status_code == 201, stored.text
        artefact = f"/v1/subjects/defendant/artefacts/{stored.json()['id']}"
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": "defendant", "reason": "litigation", "reference": "CASE-7"},
            headers=auth(compliance),
        )
        assert placed.status_code == 201, placed.text
        refused = http.delete(artefact, headers=auth(app))
    assert refused.status_code == 409  # the hold keeps it

    restored_url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", restored_url, str(dump))
    restored = Settings(data_dir=private_vault.data_dir, database_url=restored_url)
    with running_server(restored, restored_url) as server, server.client() as http:
        hold_after = http.get(f"/v1/holds/{placed.json()['id']}", headers=auth(compliance))
        deleted = http.delete(artefact, headers=auth(app))
    assert hold_after.status_code == 200 and hold_after.json()["active"]
    assert deleted.status_code == 409, deleted.text
