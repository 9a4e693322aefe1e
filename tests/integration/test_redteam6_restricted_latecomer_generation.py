"""Red team 6: a restriction replayed for a subject the backup predates brings the subject
back at generation 1, under its own erasure.

The subject was first written after the backup, restricted, then erased (an erasure
still proceeds under a restriction): on the live database its data is shredded and its
next write starts generation 2. Start-up on the restored backup replays the erasure
first (vault/services/ledger_instructions.py: the subject is unknown, so moving it past
the erased generation touches no row), then the restriction (vault/services/
ledger_standing.py, `restricted_subject`), which inserts the subject with the table's
default generation, 1: the generation the erasure shredded. Once the restriction is
lifted, the application's next write is stored under keys of that erased generation: the
read path takes it for erased data, and `datavault check deletion` reports a live key in
a generation an erasure shredded.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.helpers import auth, create_key, wait_for
from tests.integration.test_redteam4_restore import (
    _pg,
    _publish,
    _read,
    _require,
    _restored,
    _restrict,
    _write,
)
from tests.jobs import deletion_violations, run_worker_pass
from tests.support import make_tenant, running_server
from vault.config import Settings


def test_a_restored_latecomer_erased_under_restriction_writes_a_new_generation(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    backup = tmp_path / "backup.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"], owner="dpo@example.test")
        privacy = create_key(http, tenant, ["erasure"])
        _pg("pg_dump", "-Fc", "-f", str(backup), "-d", url)  # before "latecomer" exists

        _write(http, app, "latecomer", "profile")
        _restrict(http, officer, "latecomer")
        erasure = http.post("/v1/subjects/latecomer/erasure", headers=auth(privacy))
        _require(erasure.status_code == 202, erasure.text)
        erasure_url = f"/v1/erasures/{erasure.json()['id']}"

        def completed() -> bool:
            run_worker_pass(server)
            shown = http.get(erasure_url, headers=auth(privacy)).json()
            return bool(shown["status"] == "completed")

        _require(wait_for(completed, timeout=20), "the erasure completed")
        shown = http.get("/v1/subjects/latecomer", headers=auth(officer)).json()
        _require(shown["status"] == "erased", shown)
    _publish(private_vault, url)

    restored, restored_url = _restored(private_vault, pg_admin_url, backup)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        lifted = http.delete("/v1/subjects/latecomer/restriction", headers=auth(officer))
        _require(lifted.status_code == 200, lifted.text)
        # A new life for the subject: the application writes and reads it back.
        written = http.put(
            "/v1/subjects/latecomer/records/profile?category=account",
            json={"value": "new life"},
            headers=auth(app),
        )
        read: httpx.Response | None = None
        if written.status_code in (200, 201):
            read = _read(http, app, "latecomer", "profile")
        violations = deletion_violations(server)
    outcome = (
        written.status_code in (200, 201),
        read.status_code if read is not None else None,
        [v.kind for v in violations],
    )
    assert outcome == (True, 200, []), outcome
