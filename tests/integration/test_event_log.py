"""The server log over a short scenario: the deletion guarantee's state changes are logged
as events with ids only, and no subject reference, note, case reference, record value or
API key secret appears in any line. The vault is its own, with its jobs run by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.helpers import auth, create_key, put_record, rfc3339, subject_url
from tests.jobs import expire_hold
from tests.support import ServerThread, make_tenant, private_server
from vault.runtime import operator_context
from vault.services.erasure_receipts import ReceiptIssuer
from workers.erasure import run_due_erasures
from workers.hold_expiry import journal_expired_holds
from workers.ledger import complete_published_erasures, publish_pending

ERASED_REF = "ref-erased-9f4c2a"
CANCELLED_REF = "ref-cancelled-77d1b0"
HELD_REF = "ref-held-3e8a55"
NOTE = "note-text-5c1d-handle-with-care"
CASE = "case-ref-2b9e61"
RECORD_VALUE = "record-plaintext-a0b7c3"
RECIPIENT = "recipient-name-4d7e90"
DESCRIPTION = "description-text-81c3f2"


@pytest.fixture
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(pg_admin_url, tmp_path_factory.mktemp("events") / "data") as server:
        yield server


def _run_jobs(vault: ServerThread) -> None:
    """One pass of what the worker does every few seconds: shred, publish, complete,
    journal expired holds."""

    async def run() -> None:
        async with operator_context(vault.settings, vault.database_url) as ctx:
            await run_due_erasures(ctx.db, ctx.keyring)
            issuer = await ReceiptIssuer.for_deployment(ctx.db, ctx.root, ctx.settings)
            await publish_pending(ctx.db, ctx.blobs, signer=issuer.signer)
            await complete_published_erasures(ctx.db, issuer)
            await journal_expired_holds(ctx.db)

    asyncio.run(run())


def _hold(http: Any, key: dict[str, Any], **fields: Any) -> str:
    body = {"reason": "billing", "reference": CASE, "note": NOTE, **fields}
    response = http.post("/v1/holds", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    hold_id: str = response.json()["id"]
    return hold_id


def test_state_changes_are_logged_with_ids_only(
    vault: ServerThread, capsys: pytest.CaptureFixture[str], vault_logging: None
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        value = json.dumps({"v": RECORD_VALUE}).encode()
        assert put_record(http, app, ERASED_REF, "profile", value).status_code == 201
        assert put_record(http, app, HELD_REF, "profile", value).status_code == 201

        released = _hold(http, compliance, subject_ref=HELD_REF, categories=["account"])
        release = http.post(f"/v1/holds/{released}/release", json={"reason": "case closed"},
                            headers=auth(compliance))  # fmt: skip
        assert release.status_code == 200, release.text
        disclosed = http.post(
            "/v1/disclosures",
            json={"hold_id": released, "recipient": RECIPIENT, "legal_basis": "order",
                  "reference": CASE, "categories": ["account"], "description": DESCRIPTION,
                  "disclosed_at": rfc3339(datetime.now(UTC))},
            headers=auth(compliance),
        )  # fmt: skip
        assert disclosed.status_code == 201, disclosed.text
        soon = rfc3339(datetime.now(UTC) + timedelta(hours=1))
        expiring = _hold(http, compliance, subject_ref=HELD_REF, expires_at=soon)

        erased = http.post(subject_url(ERASED_REF, "erasure"), headers=auth(privacy))
        assert erased.status_code == 202, erased.text
        grace = http.patch("/v1/tenant/settings", json={"erasure_grace_hours": 1},
                           headers=tenant.auth())  # fmt: skip
        assert grace.status_code == 200, grace.text
        cancelled = http.post(subject_url(CANCELLED_REF, "erasure"), headers=auth(privacy))
        assert cancelled.status_code == 202, cancelled.text
        cancel = http.post(f"/v1/erasures/{cancelled.json()['id']}/cancel",
                           headers=auth(privacy))  # fmt: skip
        assert cancel.status_code == 200, cancel.text

        expire_hold(vault.database_url, expiring)  # the hold's expiry time passes
        _run_jobs(vault)
        status = http.get(f"/v1/erasures/{erased.json()['id']}", headers=auth(privacy)).json()
        assert status["status"] == "completed", status

    # The test's own HTTP client logs its request URLs (with references) in this process
    # too: those lines are not the server's.
    client_loggers = {"httpx", "httpcore"}
    server_output = [
        line
        for line in capsys.readouterr().out.splitlines()
        if not (line.startswith("{") and json.loads(line).get("logger") in client_loggers)
    ]
    output = "\n".join(server_output)
    lines = [json.loads(line) for line in server_output if line.startswith("{")]
    events: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        events.setdefault(str(line["event"]), []).append(line)
    tid = str(tenant.id)

    def one(event: str, **ids: str) -> dict[str, Any]:
        found = [e for e in events.get(event, []) if all(e.get(k) == v for k, v in ids.items())]
        assert len(found) == 1, (event, ids, events.get(event))
        return found[0]

    erasure_id = erased.json()["id"]
    assert one("erasure_requested", tenant_id=tid, erasure_id=erasure_id)["rate_braked"] is False
    one("erasure_requested", tenant_id=tid, erasure_id=cancelled.json()["id"])
    assert one("erasure_shredded", tenant_id=tid, erasure_id=erasure_id)["keys_destroyed"] >= 1
    one("erasure_completed", tenant_id=tid, erasure_id=erasure_id)
    one("erasure_cancelled", tenant_id=tid, erasure_id=cancelled.json()["id"],
        api_key_id=privacy["id"])  # fmt: skip
    one("hold_placed", tenant_id=tid, hold_id=released, api_key_id=compliance["id"])
    one("hold_placed", tenant_id=tid, hold_id=expiring)
    one("hold_released", tenant_id=tid, hold_id=released, api_key_id=compliance["id"])
    one("hold_expired", tenant_id=tid, hold_id=expiring)
    one("disclosure_recorded", tenant_id=tid, disclosure_id=disclosed.json()["id"],
        api_key_id=compliance["id"])  # fmt: skip
    shredded_keys = [e for e in events["key_shredded"] if e["erasure_id"] == erasure_id]
    assert shredded_keys and all(e["key_kind"] == "subject" for e in shredded_keys)
    assert {str(item["key_id"]) for item in status["shredded"]} == {
        e["key_id"] for e in shredded_keys
    }

    # Nothing a person or a client chose reaches the log: no reference, note, case
    # reference, record value, disclosure recipient or description, or API key secret.
    secrets = [ERASED_REF, CANCELLED_REF, HELD_REF, NOTE, CASE, RECORD_VALUE, RECIPIENT,
               DESCRIPTION]  # fmt: skip
    secrets += [k["secret"].split("_", 2)[2] for k in (app, privacy, compliance)]
    secrets.append(tenant.admin_key.split("_", 2)[2])
    for secret in secrets:
        assert secret not in output, secret
