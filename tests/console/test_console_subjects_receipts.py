"""Subject pages (restriction, streamed export) and the receipt check on an erasure page,
over plain HTTP."""

from __future__ import annotations

import asyncio
import io
import re
import zipfile

import asyncpg
import httpx
import pytest

from tests.api.helpers import auth, create_key, upload
from tests.console.support import sign_in, signed_in_token
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant


# Its worker passes run on a vault of this module's own (tests/conftest.py `own_vault`):
# on the session's they worked through every erasure and hold queued all session.
@pytest.fixture(scope="module")
def server(own_vault: ServerThread) -> ServerThread:
    return own_vault


def test_restrict_lift_and_export_from_the_subject_page(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = "console-subject-1"
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        assert upload(http, app, ref, b"hello export", "support").status_code == 201
        sign_in(http, officer["secret"])
        token = signed_in_token(http)
        found = http.post("/console/subjects", data={"csrf_token": token, "ref": ref})
        empty_reason = http.post(
            "/console/subjects/restriction",
            data={"csrf_token": token, "ref": ref, "action": "restrict", "reason": ""},
        )
        restricted = http.post(
            "/console/subjects/restriction",
            data={"csrf_token": token, "ref": ref, "action": "restrict", "reason": "ticket 7"},
        )
        app_read = http.get(f"/v1/subjects/{ref}", headers=auth(app))
        lifted = http.post(
            "/console/subjects/restriction",
            data={"csrf_token": token, "ref": ref, "action": "lift"},
        )
        app_again = http.get(f"/v1/subjects/{ref}", headers=auth(app))
        export = http.post("/console/subjects/export", data={"csrf_token": token, "ref": ref})
        forged = http.post("/console/subjects/export", data={"ref": ref})
        unknown = http.post(
            "/console/subjects", data={"csrf_token": token, "ref": "never-seen-ref"}
        )
    assert found.status_code == 200
    assert "support" in found.text
    assert empty_reason.status_code == 422
    assert 'id="reason-error"' in empty_reason.text
    assert restricted.status_code == 200
    assert "Processing is restricted." in restricted.text
    assert app_read.json()["status"] == "restricted"
    assert "The restriction is lifted." in lifted.text
    assert app_again.json()["status"] == "active"
    assert export.status_code == 200
    assert export.headers["content-type"] == "application/zip"
    assert export.headers["cache-control"] == "no-store"
    names = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
    assert "manifest.json" in names
    assert b"hello export" in b"".join(
        zipfile.ZipFile(io.BytesIO(export.content)).read(n) for n in names
    )
    assert forged.status_code == 403
    assert unknown.status_code == 200
    assert "no data stored for this reference" in unknown.text


def test_the_subject_page_says_erased_after_an_erasure(
    server: ServerThread, tenant: Tenant
) -> None:
    ref = "console-subject-erased"
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure", "compliance"])
        assert upload(http, app, ref, b"to be erased", "support").status_code == 201
        erasure = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy)).json()
        run_worker_pass(server)
        summary = http.get(f"/v1/subjects/{ref}", headers=auth(app)).json()
        assert summary["status"] == "erased", erasure
        sign_in(http, privacy["secret"])
        token = signed_in_token(http)
        page = http.post("/console/subjects", data={"csrf_token": token, "ref": ref})
    assert page.status_code == 200
    assert re.search(r"<dt>Status</dt><dd>(\w+)</dd>", page.text)[1] == "erased"  # type: ignore[index]


def test_the_erasure_page_says_when_a_receipt_does_not_verify(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        privacy = create_key(http, tenant, ["erasure"])
        erasure = http.post("/v1/subjects/nobody-here/erasure", headers=auth(privacy)).json()
        run_worker_pass(server)
        receipt = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=auth(privacy))
        assert receipt.status_code == 200, receipt.text
        sign_in(http, privacy["secret"])
        genuine = http.get(f"/console/erasures/{erasure['id']}")
        asyncio.run(_tamper(server.database_url, erasure["id"]))
        tampered = http.get(f"/console/erasures/{erasure['id']}")
        download = http.get(f"/console/erasures/{erasure['id']}/receipt.json")
    assert "The signature verifies against the published key" in genuine.text
    assert "The signature does NOT verify" in tampered.text
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.json()["receipt"]["erasure_id"] == erasure["id"]


async def _tamper(url: str, erasure_id: str) -> None:
    """Change one field of the stored receipt, as someone editing the database would."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE erasure_receipts SET document = jsonb_set(document, "
            "'{receipt,completed_at}', '\"2000-01-01T00:00:00Z\"') WHERE erasure_id = $1",
            erasure_id,
        )
    finally:
        await conn.close()


def test_an_admin_only_key_signs_in_but_sees_no_holds(server: ServerThread, tenant: Tenant) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        assert sign_in(http, tenant.admin_key).status_code == 303
        dashboard = http.get("/console")
        holds = http.get("/console/holds")
    assert dashboard.status_code == 200
    assert holds.status_code == 403
