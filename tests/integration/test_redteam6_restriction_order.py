"""Red team 6: a restore lifts a restriction that stands on the live database, because the
standing instructions are ordered by their transactions' start times, not by the order
their changes took effect in.

vault/services/ledger_standing.py takes the newest record of each subject "by when its row
was written" (the outbox row's `destroyed_at`, which is `now()`: the time the
transaction STARTED). Placing a restriction does work before it writes the subject row
(it opens the identity data key to seal the reason: with a root key in KMS, a KMS call
on a cold KEK cache); a lift started later, while that runs, commits first. The live
database then ends restricted (the placing's UPDATE comes last and wins), but its ledger
entry carries the earlier time, so the lift counts as the newest instruction. A restored
backup replays the lift and the subject's data is readable by the application again,
though the last answer the compliance officer saw said `restricted`.

Here the slow step is simulated by delaying the key ring's `data_key` (the KMS call) by
a second in the running vault, the only change to it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import auth, create_key
from tests.integration.test_redteam4_restore import (
    _pg,
    _publish,
    _read,
    _require,
    _restored,
    _restrict,
    _write,
)
from tests.support import make_tenant, running_server
from vault.config import Settings

SLOW_KEY_SECONDS = 1.5


def _status(http: httpx.Client, officer: dict[str, Any], ref: str) -> str:
    shown = http.get(f"/v1/subjects/{ref}", headers=auth(officer))
    _require(shown.status_code == 200, shown.text)
    status: str = shown.json()["status"]
    return status


def test_a_restriction_committed_after_a_concurrent_lift_survives_a_restore(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    backup = tmp_path / "backup.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"], owner="dpo@example.test")
        _write(http, app, "contested", "profile")
        _restrict(http, officer, "contested")
        _pg("pg_dump", "-Fc", "-f", str(backup), "-d", url)

        # One officer restricts again (the accuracy is contested once more) while another
        # lifts the restriction; the restriction's key lookup is slow (KMS).
        keyring = server.state.keyring
        original = keyring.data_key

        async def slow_data_key(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(SLOW_KEY_SECONDS)
            return await original(*args, **kwargs)

        answers: dict[str, httpx.Response] = {}

        def restrict_again() -> None:
            with server.client() as other:
                answers["restrict"] = other.post(
                    "/v1/subjects/contested/restriction",
                    json={"reason": "accuracy contested again"},
                    headers=auth(officer),
                )

        keyring.data_key = slow_data_key  # type: ignore[method-assign]
        try:
            placing = threading.Thread(target=restrict_again)
            placing.start()
            time.sleep(SLOW_KEY_SECONDS / 3)  # its transaction has started
            lifted = http.delete("/v1/subjects/contested/restriction", headers=auth(officer))
            placing.join(timeout=30)
        finally:
            keyring.data_key = original  # type: ignore[method-assign]
        _require(lifted.status_code == 200 and lifted.json()["status"] == "active", lifted.text)
        restricted = answers["restrict"]
        _require(restricted.status_code == 200, restricted.text)
        # The last answer, and the live database: restricted.
        assert restricted.json()["status"] == "restricted"
        assert _status(http, officer, "contested") == "restricted"
        assert _read(http, app, "contested", "profile").status_code == 403
    _publish(private_vault, url)

    restored, restored_url = _restored(private_vault, pg_admin_url, backup)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        status = _status(http, officer, "contested")
        read = _read(http, app, "contested", "profile").status_code
    assert (status, read) == ("restricted", 403), (
        "the restored vault lifted a restriction the live vault held"
    )
