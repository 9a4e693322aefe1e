"""The README's walkthrough with the Python client against a live vault: store → read →
erase → verify, and the receipt kept and checked offline. The session's vault runs no
jobs: a pass of the worker runs beside the client's `wait`, as the vault's worker would."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from datavault_client import Gone, NotFound, verify_receipt
from tests.client.support import tenant_clients, unique
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant


# Its worker passes run on a vault of this module's own (tests/conftest.py `own_vault`):
# on the session's they worked through every erasure and hold queued all session.
@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


def test_store_read_erase_verify(server: ServerThread, tenant: Tenant, tmp_path: Path) -> None:
    recording = tmp_path / "call.webm"
    recording.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    ref = unique("user")
    with tenant_clients(server, tenant) as keys:
        # Store: an artefact streamed from a file, a record.
        artefact = keys.app.artefacts.upload(
            ref, recording, category="recording", content_type="video/webm",
            filename="call.webm",
        )  # fmt: skip
        assert artefact.size == recording.stat().st_size
        assert artefact.sha256 == hashlib.sha256(recording.read_bytes()).hexdigest()
        assert (artefact.filename, artefact.content_type) == ("call.webm", "video/webm")
        profile = keys.app.records.put(ref, "profile", {"plan": "pro"}, category="account")
        assert (profile.created, profile.version) == (True, 1)

        # Read.
        copy = tmp_path / "copy.webm"
        assert keys.app.artefacts.download_to(ref, artefact.id, copy) == artefact.size
        assert copy.read_bytes() == recording.read_bytes()
        assert keys.app.records.get(ref, "profile") == {"plan": "pro"}
        subject = keys.app.subjects.get(ref)
        assert subject.status == "active"
        assert subject.categories["recording"].artefacts == 1

        # Erase, and wait for the vault's worker to complete it.
        requested = keys.privacy.erasures.request(ref, reference="TICKET-1")
        assert requested.created and requested.status == "scheduled"
        worker = threading.Thread(target=run_worker_pass, args=(server,))
        worker.start()
        try:
            erasure = keys.privacy.erasures.wait(requested.id, timeout=60, poll_interval=0.5)
        finally:
            worker.join()
        assert erasure.status == "completed"
        assert {"recording", "account"} <= {s.category for s in erasure.shredded}

        # Verify: the signed receipt, checked with the published key set alone.
        receipt = keys.privacy.erasures.receipt(requested.id)
        jwks = keys.privacy.receipt_keys()
        verified = verify_receipt(receipt.document, jwks, erasure_id=requested.id)
        assert verified.final and verified.completed_at is not None
        assert verified.subject_ref_hash == erasure.subject_ref_hash
        assert {"recording", "account"} <= {s["category"] for s in verified.shredded}

        # What was erased is gone for good.
        with pytest.raises(NotFound):
            keys.app.artefacts.get(ref, artefact.id)
        with pytest.raises(NotFound):
            keys.app.records.get(ref, "profile")
        assert keys.app.subjects.get(ref).status == "erased"
        with pytest.raises(Gone):
            keys.app.artefacts.delete(ref, artefact.id)

    # Kept as files, the receipt verifies later and elsewhere: the command line too.
    (tmp_path / "receipt.json").write_text(json.dumps(receipt.document))
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    checked = subprocess.run(
        [sys.executable, "-m", "datavault_client", "verify-receipt", "receipt.json",
         "--jwks", "jwks.json", "--erasure-id", requested.id],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    summary = json.loads(checked.stdout)
    assert summary["valid"] is True and summary["final"] is True
    assert ref not in checked.stdout
