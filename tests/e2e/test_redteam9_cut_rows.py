"""Red team 9: the second access-log row of an answer cut after its row was written
(vault/http/middleware.py, the eighth review's fix).

What held, shown here:
- an answer that was not cut (a one-message answer, a streamed download, a range read)
  has exactly one row: the second row is written only on a cut;
- the cut answer of tests/e2e/test_redteam8_cut_answer_logged.py (its two rows found
  through the tenant's own access-log API, so under the right tenant) leaves every chain
  intact: `datavault audit verify` passes for every tenant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

import tests.e2e.test_redteam8_cut_answer_logged as redteam8
from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    put_record,
    record_url,
    uploaded,
)
from tests.support import ServerThread, make_tenant

cut_vault = redteam8.cut_vault  # the eighth review's vault (a short recheck), as a fixture


def _audit_verify(vault: ServerThread) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": vault.database_url,
        "DATAVAULT_DATA_DIR": str(vault.settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "vault", "audit", "verify", "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_answers_not_cut_have_one_row_each(quiet_vault: ServerThread) -> None:
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    ref = f"uncut-{uuid.uuid4().hex[:8]}"
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        small = uploaded(http, app, ref, b"small")["id"]
        large = uploaded(http, app, ref, os.urandom(3 * 1024 * 1024))["id"]
        assert put_record(http, app, ref, "profile", b'{"a": 1}').status_code == 201
        requests = {
            "record": http.get(record_url(ref, "profile"), headers=auth(app)),
            "small": http.get(artefact_url(ref, small, "content"), headers=auth(app)),
            "stream": http.get(artefact_url(ref, large, "content"), headers=auth(app)),
            "range": http.get(
                artefact_url(ref, large, "content"),
                headers={**auth(app), "Range": "bytes=0-65535"},
            ),
            "metadata": http.get(artefact_url(ref, small), headers=auth(app)),
        }
        for name, answer in requests.items():
            assert answer.status_code in (200, 206), (name, answer.text)
        ids = {answer.headers["x-request-id"]: name for name, answer in requests.items()}
        rows = [row for row in access_log(http, officer, limit=500) if row["request_id"] in ids]
    counts = {ids[row["request_id"]]: 0 for row in rows}
    for row in rows:
        counts[ids[row["request_id"]]] += 1
    assert counts == dict.fromkeys(requests, 1), counts


@pytest.mark.slow
def test_a_cut_answers_second_row_keeps_the_chain_whole(cut_vault: ServerThread) -> None:
    redteam8.test_a_cut_answer_with_decrypted_data_is_not_logged_as_delivered(cut_vault)
    result = _audit_verify(cut_vault)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and all(chain["ok"] for chain in report["chains"]), result.stdout
