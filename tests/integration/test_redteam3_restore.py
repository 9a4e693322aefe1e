"""Red team 3: what a restored database backup forgets although the shred ledger's
instruction entries (migration 0025, vault/services/ledger_instructions.py) were meant to
make it keep it. Each test takes a real `pg_dump` of a running vault, changes something
through the HTTP API, restores the dump into a fresh database and starts a vault on it
(start-up replays the ledger before serving), then asks what a user relies on.

The decisions the instruction entries do not carry: withdrawing a two-person release
request, cancelling an erasure in its grace period, and the statutory retention an
erasure computed when it kept a category. Negative controls show each decision holds on
the live database, so the xfail tests fail only because of the restore; inside them
the staging steps raise RuntimeError, so only the final expectation can be the xfail.

Fixed since (each test's "Observed" is what the review saw): withdrawals, cancellations,
revocations and closures are instruction entries too (vault/services/ledger_controls.py,
migration 0030), and a restored erasure's stated kept_until is a floor for its retries."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import auth, create_key, operator_key, parse_time
from tests.jobs import run_worker_pass
from tests.support import ServerThread, empty_database, make_tenant, running_server
from vault.config import Settings
from vault.db.embedded import postgres_bin_dir

PG_BIN = postgres_bin_dir()


def _require(ok: object, detail: object) -> None:
    """A precondition: RuntimeError, so a staged scenario that did not happen fails the
    test instead of passing as the xfail (which counts only an AssertionError)."""
    if not ok:
        raise RuntimeError(f"precondition failed: {detail}")


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _dump(url: str, path: Path) -> None:
    _pg("pg_dump", "-Fc", "-f", str(path), "-d", url)


def _restored(private_vault: Settings, pg_admin_url: str, dump: Path) -> tuple[Settings, str]:
    """The dump in a fresh database, with the deployment's data dir (root key, blobs and
    the shred ledger, which were not rolled back)."""
    url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", url, str(dump))
    return Settings(data_dir=private_vault.data_dir, database_url=url), url


def _write(http: httpx.Client, app: dict[str, Any], ref: str, name: str, category: str) -> None:
    written = http.put(
        f"/v1/subjects/{ref}/records/{name}?category={category}",
        json={"value": f"{name} of {ref}"},
        headers=auth(app),
    )
    _require(written.status_code == 201, written.text)


def _read(http: httpx.Client, key: dict[str, Any], ref: str, name: str) -> httpx.Response:
    return http.get(f"/v1/subjects/{ref}/records/{name}", headers=auth(key))


# --- a withdrawn release request ---------------------------------------------------------


def _litigation_hold(http: httpx.Client, officer: dict[str, Any], ref: str) -> str:
    placed = http.post(
        "/v1/holds",
        json={"subject_ref": ref, "reason": "litigation", "reference": "CASE-7"},
        headers=auth(officer),
    )
    _require(placed.status_code == 201, placed.text)
    return str(placed.json()["id"])


def _ask_release(http: httpx.Client, key: dict[str, Any], hold_id: str) -> httpx.Response:
    return http.post(
        f"/v1/holds/{hold_id}/release", json={"reason": "case closed"}, headers=auth(key)
    )


def _officers(server: ServerThread, tenant: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two compliance officers of independent lineage (what a two-person release needs)."""
    return (
        operator_key(server, tenant, ["compliance"], "alice@example.test"),
        operator_key(server, tenant, ["compliance"], "bob@example.test"),
    )


def test_control_a_withdrawn_release_request_cannot_be_confirmed(
    private_vault: Settings,
) -> None:
    """Negative control for the test below, on the live database: once Alice withdraws
    her request, Bob's call is a new request (202), not a confirmation; the hold stands."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        alice, bob = _officers(server, tenant)
        hold_id = _litigation_hold(http, alice, "defendant")
        assert _ask_release(http, alice, hold_id).status_code == 202
        withdrawn = http.delete(f"/v1/holds/{hold_id}/release", headers=auth(alice))
        assert withdrawn.status_code in (200, 204), withdrawn.text
        second = _ask_release(http, bob, hold_id)
        shown = http.get(f"/v1/holds/{hold_id}", headers=auth(bob)).json()
    assert second.status_code == 202, second.text
    assert shown["active"] and shown["released_at"] is None


def test_a_restore_does_not_revive_a_withdrawn_release_request(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """A litigation hold ends by one hand after a restore.

    Steps: Alice (compliance, owner alice@) places a litigation hold and asks for its
    release (202: the first of two people). The nightly backup runs (pg_dump). Alice
    withdraws her request (DELETE /v1/holds/{id}/release): the case is not closed after
    all. The database is lost and the dump restored; the vault starts on it (ledger
    replay before serving). Bob (compliance, another owner, independent lineage) calls
    release.

    Observed: Bob's call answers 200 and releases the hold: the restored database still
    holds Alice's request (withdrawing it is no instruction entry, and the hold's entry
    records no request), so Bob's single call is taken as the confirmation. Alice's
    decision is undone and the hold ends by one person; what it kept is shredded on the
    executor's next pass. Expected: the withdrawal survives the restore (Bob's call is a
    new request, 202, as in the control above), or at least a request the database cannot
    show to be standing is not confirmable."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        alice, bob = _officers(server, tenant)
        hold_id = _litigation_hold(http, alice, "defendant")
        _require(
            _ask_release(http, alice, hold_id).status_code == 202,
            "the release request",
        )
        _dump(url, dump)
        withdrawn = http.delete(f"/v1/holds/{hold_id}/release", headers=auth(alice))
        _require(withdrawn.status_code in (200, 204), withdrawn.text)

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        second = _ask_release(http, bob, hold_id)
        shown = http.get(f"/v1/holds/{hold_id}", headers=auth(bob)).json()
    assert second.status_code == 202, second.text
    assert shown["active"] and shown["released_at"] is None


# --- a cancelled erasure -----------------------------------------------------------------


def _erase_in_grace(
    server: ServerThread, http: httpx.Client, tenant: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A tenant with a 24 h grace period, a subject's record, and an erasure requested
    for it (scheduled, cancellable for a day)."""
    graced = http.patch(
        "/v1/tenant/settings", json={"erasure_grace_hours": 24}, headers=tenant.auth()
    )
    _require(graced.status_code == 200, graced.text)
    app = create_key(http, tenant, ["ingest", "read"])
    privacy = create_key(http, tenant, ["erasure"])
    _write(http, app, "customer", "profile", "account")
    asked = http.post("/v1/subjects/customer/erasure", headers=auth(privacy))
    _require(asked.status_code == 202 and asked.json()["status"] == "scheduled", asked.text)
    return app, privacy, str(asked.json()["id"])


def _cancel(http: httpx.Client, privacy: dict[str, Any], erasure_id: str) -> None:
    cancelled = http.post(f"/v1/erasures/{erasure_id}/cancel", headers=auth(privacy))
    _require(
        cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    )


def test_control_a_cancelled_erasure_stays_cancelled(private_vault: Settings) -> None:
    """Negative control on the live database: an erasure cancelled in its grace period
    never runs, even two days on, and the subject's data reads."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app, privacy, erasure_id = _erase_in_grace(server, http, tenant)
        _cancel(http, privacy, erasure_id)
        run_worker_pass(server, days=2)
        shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
        read = _read(http, app, "customer", "profile")
    assert shown["status"] == "cancelled", shown
    assert read.status_code == 200, read.text


def test_a_restore_does_not_revive_a_cancelled_erasure(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """An erasure cancelled in its grace period runs after a restore.

    Steps: the tenant has a 24 h grace period. An erasure is requested for `customer`
    (202, scheduled). The nightly backup runs. Within the grace period the privacy team
    cancels it (200, `cancelled`): the request was not the customer's. Later the database
    is lost and the dump restored; the vault starts on it (ledger replay); the executor's
    pass runs two days on.

    Observed: the restored erasure is `scheduled` again (cancelling is no instruction
    entry), its grace period has passed, so the executor shreds the subject's keys: the
    erasure completes with a receipt and the record the controller kept is gone for good
    (410). Expected: the cancellation survives the restore (status `cancelled`, the
    record reads), as in the control above."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app, privacy, erasure_id = _erase_in_grace(server, http, tenant)
        _dump(url, dump)
        _cancel(http, privacy, erasure_id)

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        run_worker_pass(server, days=2)
        shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
        read = _read(http, app, "customer", "profile")
    assert shown["status"] == "cancelled", shown
    assert read.status_code == 200, read.text


# --- statutory retention an erasure stated -----------------------------------------------


def _keys(http: httpx.Client, tenant: Any) -> dict[str, dict[str, Any]]:
    return {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "privacy": create_key(http, tenant, ["erasure"]),
        "compliance": create_key(http, tenant, ["compliance"]),
    }


def _erase_keeping_billing(
    server: ServerThread, http: httpx.Client, tenant: Any, keys: dict[str, dict[str, Any]],
    *, keep_days: int,
) -> tuple[str, datetime]:  # fmt: skip
    """Raise billing's statutory retention to `keep_days`, write an invoice, erase the
    subject: held, billing retained until (about) `keep_days` on."""
    raised = http.patch(
        "/v1/tenant/settings",
        json={"retention": {"billing": {"keep_at_least_days": keep_days}}},
        headers=tenant.auth(),
    )
    _require(raised.status_code == 200, raised.text)
    _write(http, keys["app"], "payer", "invoice", "billing")
    asked = http.post("/v1/subjects/payer/erasure", headers=auth(keys["privacy"]))
    erasure_id = str(asked.json()["id"])
    run_worker_pass(server)
    shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(keys["privacy"])).json()
    _require(shown["status"] == "held", shown)
    (retained,) = shown["retained"]
    _require(retained["category"] == "billing", shown)
    return erasure_id, parse_time(retained["until"])


def _billing_capped(http: httpx.Client, tenant: Any, days: int) -> None:
    """billing's statutory retention before the raise: shorter than the default 7 years
    (a tenant that keeps invoices elsewhere), lowered while nothing is written, so the
    closure delay binds no data."""
    lowered = http.patch(
        "/v1/tenant/settings",
        json={"retention": {"billing": {"keep_at_least_days": days}}},
        headers=tenant.auth(),
    )
    _require(lowered.status_code == 200, lowered.text)


def test_control_retention_an_erasure_stated_is_kept(private_vault: Settings) -> None:
    """Negative control on the live database: what an erasure retained stays kept (and
    compliance-readable) until the date its status stated, and is shredded after."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        _billing_capped(http, tenant, 10)
        keys = _keys(http, tenant)
        erasure_id, until = _erase_keeping_billing(server, http, tenant, keys, keep_days=400)
        privacy, compliance = keys["privacy"], keys["compliance"]
        days_to_until = (until - datetime.now(UTC)) / timedelta(days=1)
        run_worker_pass(server, days=30)
        kept = _read(http, compliance, "payer", "invoice")
        run_worker_pass(server, days=days_to_until + 2)
        after = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
    assert kept.status_code == 200, kept.text
    assert after["status"] == "completed", after


def test_a_restore_keeps_what_an_erasure_retained_until_the_date_it_stated(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Statutory retention stated by an erasure is cut short by a restore.

    Steps: billing's keep_at_least_days is 10. The nightly backup runs. The tenant raises
    it to 400 (takes effect at once: a raise needs no closure delay). An invoice is
    written and the subject erased: the erasure is `held`, `retained: [{billing, until:
    +400 d}]`, and its interim receipt says so; its instruction entry (ledger) records
    that item with kept_until. The database is lost and the dump restored; start-up
    replays the erasure (held, its items with kept_until) before serving. The executor
    runs 30 days on.

    Observed: the restored erasure's billing key is shredded 30 days on, 370 days before
    the `until` it stated (the held retry recomputes retention from the restored tenant
    settings, 10 days, and ignores the replayed kept_until); the compliance scope gets
    410 for the invoice and the erasure completes. The restore thus shortened statutory
    retention with no closure delay. Expected: what the erasure retained stays kept until
    the `until` it stated (as in the control above).

    (The backup also lacks the invoice itself, written after it; the key that encrypts
    kept invoices of the same generation written before the backup would be shredded
    the same way. The test keeps the invoice after the dump to stay short: the status
    and the early shred are what it shows.)"""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        _billing_capped(http, tenant, 10)
        keys = _keys(http, tenant)
        privacy, compliance = keys["privacy"], keys["compliance"]
        _write(http, keys["app"], "payer", "receipt", "billing")  # in the backup, same key
        _dump(url, dump)
        erasure_id, until = _erase_keeping_billing(server, http, tenant, keys, keep_days=400)
    _require(
        until > datetime.now(UTC) + timedelta(days=390),
        "billing retained for about 400 days",
    )

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        replayed = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
        run_worker_pass(server, days=30)
        kept = _read(http, compliance, "payer", "receipt")
        after = http.get(f"/v1/erasures/{erasure_id}", headers=auth(privacy)).json()
    _require(replayed["status"] == "held", replayed)  # the replay itself worked
    assert kept.status_code == 200, kept.text
    assert after["status"] == "held", after


# --- a revoked API key -------------------------------------------------------------------


def _erased_with_kept_invoice(
    server: ServerThread, http: httpx.Client, tenant: Any
) -> dict[str, dict[str, Any]]:
    """A subject whose invoice an erasure kept (billing: 7 years' statutory retention),
    readable only by the compliance scope."""
    keys = _keys(http, tenant)
    _write(http, keys["app"], "payer", "invoice", "billing")
    asked = http.post("/v1/subjects/payer/erasure", headers=auth(keys["privacy"]))
    _require(asked.status_code == 202, asked.text)
    run_worker_pass(server)
    _require(_read(http, keys["app"], "payer", "invoice").status_code == 403, "app reads kept")
    _require(_read(http, keys["compliance"], "payer", "invoice").status_code == 200, "kept")
    return keys


def _revoke(http: httpx.Client, tenant: Any, key: dict[str, Any]) -> None:
    revoked = http.delete(f"/v1/api-keys/{key['id']}", headers=tenant.auth())
    _require(revoked.status_code == 204, revoked.text)


def test_control_a_revoked_compliance_key_reads_nothing(private_vault: Settings) -> None:
    """Negative control on the live database: once revoked, the compliance key gets 401
    for what the erasure kept."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        keys = _erased_with_kept_invoice(server, http, tenant)
        _revoke(http, tenant, keys["compliance"])
        read = _read(http, keys["compliance"], "payer", "invoice")
    assert read.status_code == 401, read.text


def test_a_restore_does_not_revive_a_revoked_key(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """A revoked compliance key reads an erased subject's kept data after a restore.

    Steps: an erasure keeps a subject's invoice (billing retention): compliance only. The
    nightly backup runs. The compliance officer's key leaks and the admin revokes it
    (DELETE /v1/api-keys/{id}: 204; the key gets 401 from then on). The database is lost
    and the dump restored; the vault starts on it. The leaked key is used again.

    Observed: 200 with the erased subject's kept invoice: the revocation was in the lost
    rows only (it is no ledger entry), so the restored vault takes the key as live, with
    its compliance scope (kept data, restricted subjects, holds, disclosures). The
    runbook's list of what a restore does not bring back does not name revocations.
    Expected: a key revoked before the loss stays revoked (401), or the runbook makes
    re-revoking (or rotating every key) a step of the restore before serving."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        keys = _erased_with_kept_invoice(server, http, tenant)
        _dump(url, dump)
        _revoke(http, tenant, keys["compliance"])

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        read = _read(http, keys["compliance"], "payer", "invoice")
    assert read.status_code == 401, read.text


# --- a tenant closure --------------------------------------------------------------------


def test_control_a_requested_closure_stands(private_vault: Settings) -> None:
    """Negative control on the live database: a requested closure shows `closing`."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        asked = http.post(
            "/v1/tenant/closure", json={"reason": "offboarding"}, headers=tenant.auth()
        )
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()
    assert asked.status_code == 202, asked.text
    assert shown["status"] == "closing", shown


def test_a_restore_keeps_a_requested_closure(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """A tenant's closure instruction is silently lost by a restore.

    Steps: the nightly backup runs. The tenant's admin requests closure (POST
    /v1/tenant/closure: 202, `closing`, due in 60 days: every key destroyed then, except
    what holds keep). The database is lost and the dump restored; the vault starts on it.

    Observed: the tenant is `active` again, with no closure due: nothing will destroy its
    keys, and nothing tells anyone (the closure is no ledger entry, so start-up's log
    `instructions_restored` does not count it, and the runbook's list of what a restore
    does not bring back names scheduled erasures and cancellations but not closures).
    Expected: the closure stands after the restore (`closing`, the same due date), or the
    runbook names closures among what the operator must ask tenants to repeat."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        _dump(url, dump)
        asked = http.post(
            "/v1/tenant/closure", json={"reason": "offboarding"}, headers=tenant.auth()
        )
        _require(asked.status_code == 202, asked.text)

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()
    assert shown["status"] == "closing", shown
