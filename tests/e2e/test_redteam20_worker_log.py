"""Red team 20: what `datavault worker`, as its own process, writes while it carries out
erasures that keep something (a hold) and meets a blob deleted underneath it.

Held: the worker's log names jobs, ids and error types only, never a subject reference,
a filename, a record value or a hold's case reference and note; what the erasure left on
disk holds no plaintext.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import httpx

from tests.api.helpers import (
    auth,
    blob_files,
    blob_root,
    create_key,
    data_keys,
    put_record,
    subject_url,
    upload,
)
from tests.support import ServerThread, make_tenant, vault_process


def test_the_worker_logs_no_canary_while_it_erases_around_a_hold_and_a_missing_blob(
    own_vault: ServerThread, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    canary = {
        "ref": f"rt20wref{tag}",
        "kept": f"rt20wkept{tag}",
        "filename": f"rt20wfile{tag}.wav",
        "value": f"rt20wvalue{tag}",
        "case": f"rt20wcase{tag}",
        "note": f"rt20wnote{tag}",
        "plaintext": f"rt20wplain{tag}",
    }
    server = own_vault
    tenant = make_tenant(server.settings, server.database_url)
    with server.client() as http:
        keys = data_keys(http, tenant)
        eraser = create_key(http, tenant, ["erasure"])
        statuses = []
        for ref in (canary["ref"], canary["kept"]):
            value = json.dumps({"v": canary["value"]}).encode()
            assert put_record(http, keys.ingest, ref, "email", value).status_code == 201
            body = canary["plaintext"].encode() * 1000
            created = upload(http, keys.ingest, ref, body, filename=canary["filename"])
            assert created.status_code == 201, created.text
        hold = {"subject_ref": canary["kept"], "reason": "billing",
                "reference": canary["case"], "note": canary["note"]}  # fmt: skip
        assert http.post("/v1/holds", json=hold, headers=auth(keys.compliance)).status_code == 201
        # A blob gone underneath the worker: its hygiene delete finds nothing.
        for path in blob_files(blob_root(server.settings)):
            path.unlink()
            break
        log = tmp_path / "worker.log"
        env = {**os.environ, "DATABASE_URL": server.database_url,
               "DATAVAULT_DATA_DIR": str(server.settings.data_dir)}  # fmt: skip
        with vault_process(["worker"], env, log, probe="/readyz") as worker:
            erasures = [
                http.post(subject_url(ref, "erasure"), json={}, headers=auth(eraser)).json()
                for ref in (canary["ref"], canary["kept"])
            ]
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                statuses = [
                    http.get(f"/v1/erasures/{e['id']}", headers=auth(eraser)).json()["status"]
                    for e in erasures
                ]
                if statuses == ["completed", "held"]:
                    break
                time.sleep(0.2)
            metrics = httpx.get(f"{worker.url}/metrics").text
            # Done with it: a kill spares the test the drain (what a kill leaves is
            # test_redteam20_process_crash's subject).
            worker.process.kill()
            worker.process.wait(timeout=10)
    assert statuses == ["completed", "held"], log.read_text()[-2000:]
    written = log.read_text() + metrics
    for name, planted in canary.items():
        assert planted not in written, f"{name} reached the worker's log or metrics"
    for path in server.settings.data_dir.rglob("*"):
        if path.is_file():
            assert canary["plaintext"].encode() not in path.read_bytes(), path
