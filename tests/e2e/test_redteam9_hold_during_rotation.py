"""Red team 9: a hold that share-locks its key rows (migration 0039) during a KEK rotation.

A rotation (`datavault keys rotate`, vault/services/key_rotation.py) gives every live
subject key new bytes under the new KEK version and rewraps its data keys, a batch of
subjects per transaction (vault/services/subject_rewrap.py: `rewrap_data_keys`, then
`rewrap_subject_keys`, which also moves `kek_version`). The keys stay live throughout.

The hold (dv_transfer_hold, migration 0039) joins data key, subject key and the tenant's
KEK version `k.version = s.kek_version`, and locks only `d` and `s`. A hold that meets a
rewrap in progress waits for it, and READ COMMITTED then re-checks the row with the
*newest* versions of the locked rows (`s.kek_version` now the new version) but the
*same* version of the row it did not lock (`k`, the old KEK version it joined first):
the join no longer matches and the row drops out, so the hold answers "not live" for a
key that is live. Before 0039 the hold read all three in one snapshot and held the key.

Where the read's own statement waited for the rewrap first (a download's or a record's
read statement, migrations 0032 and 0037) the vault takes the hold again in a statement
of its own and the read succeeds, and a listing of a subject's artefacts reads its page
again (HELD_READ_ATTEMPTS). Where the hold is the statement that meets the rewrap, its
"not live" is final: a listing of disclosures shows the live subject's disclosure as
erased (`description_erased`, no `subject_ref`), and an export's claim of a record's key
(KeyDestroyed) cuts the export.

The window (the rewrap's transaction from its UPDATEs to its commit; tens of
milliseconds per batch, the whole rotation long for a tenant with many subjects) is
widened on purpose: the rewrap's `rewrap_subject_keys` statement spends PAUSE_SECONDS
after its UPDATE, before its transaction commits. The rotation runs in this process
(operator_context, as `datavault keys rotate` does), so its statement is patched here.
"""

from __future__ import annotations

import asyncio
import io
import threading
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    put_record,
    rfc3339,
    subject_url,
    uploaded,
)
from tests.support import ServerThread, SlowedQuery, Tenant, make_tenant, paused_in_database
from vault.runtime import operator_context
from vault.services import subject_rewrap
from vault.services.key_rotation import rotate_tenant_kek

PAUSE_SECONDS = 3.0


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


def _rotate(vault: ServerThread, tenant: Tenant) -> None:
    async def run() -> None:
        async with operator_context(vault.settings, vault.database_url) as ctx:
            await rotate_tenant_kek(ctx.db, ctx.keyring, ctx.root, tenant.id)

    asyncio.run(run())


def _disclose(http: httpx.Client, officer: dict[str, Any], ref: str, marker: str) -> None:
    recorded = http.post(
        "/v1/disclosures",
        json={
            "subject_ref": ref, "recipient": "Politie Eenheid Amsterdam",
            "legal_basis": "Art. 126nd Sv (vordering)", "reference": "PV-1",
            "categories": ["account"], "disclosed_at": rfc3339(datetime.now(UTC)),
            "description": marker,
        },
        headers=auth(officer),
    )  # fmt: skip
    assert recorded.status_code == 201, recorded.text


def _during_rotation(
    vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch,
    read: Callable[[httpx.Client], httpx.Response],
) -> tuple[httpx.Response, httpx.Response]:  # fmt: skip
    """`read` while the rotation's rewrap of the tenant's subjects has updated their key
    rows and not committed (PAUSE_SECONDS), and `read` again after the rotation."""
    # The batch's UPDATE done, its transaction not yet committed, for PAUSE_SECONDS.
    slow = SlowedQuery(
        subject_rewrap.Q,
        "rewrap_subject_keys",
        lambda q: (
            f"WITH u AS (\n{q}\nRETURNING 1) SELECT pg_sleep({PAUSE_SECONDS})"
            " FROM (SELECT count(*) FROM u) c"
        ),
    )
    monkeypatch.setattr(subject_rewrap, "Q", slow)
    slow.armed.set()
    rotation = threading.Thread(target=_rotate, args=(vault, tenant))
    rotation.start()
    assert slow.entered.wait(10), "the rotation never reached its rewrap"
    # The rewrap's UPDATEs are in (its pause runs after them); its commit is late.
    assert paused_in_database(vault.database_url), "the rewrap never reached its pause"
    with vault.client() as http:
        during = read(http)
        # The read came while the rewrap's UPDATEs were in and not committed (under
        # migration 0039 it waited for them; since 0042 it takes no row lock and reads
        # the keys as committed before the rotation).
        assert rotation.is_alive(), "the rotation committed before the read: window missed"
        rotation.join(30)
        after = read(http)
    return during, after


def test_a_disclosure_listing_during_a_kek_rotation_does_not_show_a_live_subject_erased(
    quiet_vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: an officer lists disclosures while `keys rotate` rewraps the subject's keys.

    Observed: the subject's disclosure is listed with `description_erased` true and no
    `subject_ref`, as if the subject had been erased; the same listing after the
    rotation shows it whole.
    Expected: shown whole during the rotation too (the hold waits for the rewrap and then
    holds the rewrapped key)."""
    ref = f"rotated-{uuid.uuid4().hex[:8]}"
    marker = f"data-{uuid.uuid4().hex}"
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, ref, "profile", b'{"v": 1}').status_code == 201
        _disclose(http, officer, ref, marker)

    def listing(http: httpx.Client) -> httpx.Response:
        return http.get("/v1/disclosures", headers=auth(officer), timeout=30)

    during, after = _during_rotation(quiet_vault, tenant, monkeypatch, listing)
    assert after.status_code == 200 and marker in after.text, after.text
    assert during.status_code == 200, during.text
    assert marker in during.text and ref in during.text, during.text


def test_an_export_during_a_kek_rotation_is_whole(
    quiet_vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a subject's export (its records decrypted one by one, each record's key
    claimed before it is opened) while `keys rotate` rewraps the subject's keys.

    Observed: the export is cut (the claim found the live key "destroyed"): the client
    gets a truncated answer or a reset connection.
    Expected: the whole export, as after the rotation."""
    ref = f"rotated-{uuid.uuid4().hex[:8]}"
    marker = f"data-{uuid.uuid4().hex}"
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        value = f'{{"v": "{marker}"}}'.encode()
        assert put_record(http, app, ref, "profile", value).status_code == 201

    def export(http: httpx.Client) -> httpx.Response:
        try:
            answer = http.get(subject_url(ref, "export"), headers=auth(officer), timeout=30)
        except httpx.TransportError as exc:  # cut after its status line
            return httpx.Response(599, text=type(exc).__name__)
        return answer

    during, after = _during_rotation(quiet_vault, tenant, monkeypatch, export)
    assert after.status_code == 200, after.text
    assert during.status_code == 200, during.text
    assert marker.encode() in _zip_contents(during.content)


def _zip_contents(body: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return b"".join(archive.read(name) for name in archive.namelist())


def test_a_download_during_a_kek_rotation_is_answered(
    quiet_vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: a download whose read statement waits for the rewrap gets `held` false from
    it, takes the hold again in a statement of its own (which now sees the rewrap
    committed) and answers 200 with the bytes."""
    ref = f"rotated-{uuid.uuid4().hex[:8]}"
    marker = f"data-{uuid.uuid4().hex}"
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        item = uploaded(http, app, ref, marker.encode())["id"]

    def download(http: httpx.Client) -> httpx.Response:
        return http.get(artefact_url(ref, item, "content"), headers=auth(app), timeout=30)

    during, after = _during_rotation(quiet_vault, tenant, monkeypatch, download)
    assert after.status_code == 200 and after.text == marker
    assert during.status_code == 200 and during.text == marker
