"""Red team 4: controls a restored database backup still loosened after migration 0030
(vault/services/ledger_controls.py records erasure requests, cancellations, key
revocations, closures and pending release requests, and replays them on start); the
four found here are recorded since migration 0031 (vault/services/ledger_standing.py).

Each test takes a real `pg_dump` of a running vault, changes a control through the HTTP
API, restores the dump into a fresh database and starts a vault on it (start-up replays
the shred ledger before serving), then asks what a user relies on. A control test shows
the same control holds on the live database, so a failure is the restore's; staging
steps raise RuntimeError, so a scenario that did not happen cannot pass for the
expectation."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import auth, create_key
from tests.console.support import sign_in, signed_in_token
from tests.support import empty_database, make_tenant, running_server
from vault.config import Settings
from vault.db.embedded import postgres_bin_dir
from vault.runtime import operator_context
from vault.services.ledger_watermark import watermark_for
from vault.services.receipts import ReceiptSigner
from workers.ledger import publish_pending
from workers.retention import apply_retention

PG_BIN = postgres_bin_dir()


def _require(ok: object, detail: object) -> None:
    """A precondition: RuntimeError, so a staged scenario that did not happen fails the
    test instead of passing as the xfail (which counts only an AssertionError)."""
    if not ok:
        raise RuntimeError(f"precondition failed: {detail}")


def _pg(tool: str, *args: str) -> None:
    subprocess.run([str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)


def _restored(private_vault: Settings, pg_admin_url: str, dump: Path) -> tuple[Settings, str]:
    """The dump in a fresh database, with the deployment's data dir (root key, blobs and
    the shred ledger, which were not rolled back)."""
    url = empty_database(pg_admin_url)
    _pg("pg_restore", "-d", url, str(dump))
    return Settings(data_dir=private_vault.data_dir, database_url=url), url


def _write(
    http: httpx.Client, app: dict[str, Any], ref: str, name: str, category: str = "account"
) -> None:
    written = http.put(
        f"/v1/subjects/{ref}/records/{name}?category={category}",
        json={"value": f"{name} of {ref}"},
        headers=auth(app),
    )
    _require(written.status_code == 201, written.text)


def _read(http: httpx.Client, key: dict[str, Any], ref: str, name: str) -> httpx.Response:
    return http.get(f"/v1/subjects/{ref}/records/{name}", headers=auth(key))


# --- a restriction of processing (Art. 18) -----------------------------------------------


def _restrict(http: httpx.Client, officer: dict[str, Any], ref: str) -> None:
    restricted = http.post(
        f"/v1/subjects/{ref}/restriction", json={"reason": "accuracy contested"},
        headers=auth(officer),
    )  # fmt: skip
    _require(restricted.status_code == 200, restricted.text)
    _require(restricted.json()["status"] == "restricted", restricted.text)


def test_control_a_restriction_stops_the_applications_reads(private_vault: Settings) -> None:
    """On the live database: after the restriction the application's read key gets 403."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"], owner="dpo@example.test")
        _write(http, app, "contester", "profile")
        _require(_read(http, app, "contester", "profile").status_code == 200, "readable")
        _restrict(http, officer, "contester")
        after = _read(http, app, "contester", "profile")
    assert after.status_code == 403, after.text


def test_a_restriction_placed_after_the_backup_survives_a_restore(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps: the application writes a record for a subject; nightly pg_dump; the subject
    contests accuracy and the DPO restricts processing (POST /v1/subjects/{ref}/
    restriction, 200, status restricted); the database is lost and the dump restored;
    a vault starts on it (the shred ledger is replayed). Expected: the restriction is a
    control the tenant placed, so the application's read key still gets 403 and the
    subject still shows `restricted`. Observed before the fix: the restriction was not an
    instruction entry (ledger_controls recorded erasure requests, key revocations and
    closures only), so the restored vault served the restricted data to the application
    again (200) and let it write and delete it. Now recorded (`restriction`, migration
    0031)."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"], owner="dpo@example.test")
        _write(http, app, "contester", "profile")
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        _restrict(http, officer, "contester")

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        status = http.get("/v1/subjects/contester", headers=auth(officer)).json()
        read = _read(http, app, "contester", "profile")
    assert (status["status"], read.status_code) == ("restricted", 403), (status, read.text)


# --- a closure requested and cancelled twice ----------------------------------------------


def _close_and_cancel(http: httpx.Client, tenant: Any) -> None:
    asked = http.post("/v1/tenant/closure", json={"reason": "offboarding"}, headers=tenant.auth())
    _require(asked.status_code == 202, asked.text)
    cancelled = http.delete("/v1/tenant/closure", headers=tenant.auth())
    _require(cancelled.status_code == 200, cancelled.text)


def test_control_a_closure_cancelled_twice_leaves_the_tenant_active(
    private_vault: Settings,
) -> None:
    """On the live database: requested, cancelled, requested again, cancelled again."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        _close_and_cancel(http, tenant)
        _close_and_cancel(http, tenant)
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()
    assert shown["status"] == "active", shown


def test_a_closure_cancelled_after_being_requested_again_stays_cancelled(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps: the tenant requests its closure (202); nightly pg_dump (the backup holds
    the closure, closing); the tenant cancels it (200), changes its mind twice more:
    requests closure again (202) and cancels that too (200); the database is lost and the
    dump restored; a vault starts on it. Expected: the tenant's standing instruction is
    "do not close": active. Observed before the fix: `drop_cancelled_closure` dropped only
    a closure with the cancelled request's own `requested_at`, so the backup's (first)
    request was left standing and the closure job would have destroyed every key of a
    tenant that cancelled its closure. Now a recorded cancellation ends every closure
    requested at or before the request it cancelled."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        asked = http.post(
            "/v1/tenant/closure", json={"reason": "offboarding"}, headers=tenant.auth()
        )
        _require(asked.status_code == 202, asked.text)
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        cancelled = http.delete("/v1/tenant/closure", headers=tenant.auth())
        _require(cancelled.status_code == 200, cancelled.text)
        _close_and_cancel(http, tenant)
        live = http.get("/v1/tenant", headers=tenant.auth()).json()
        _require(live["status"] == "active", live)

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        shown = http.get("/v1/tenant", headers=tenant.auth()).json()
    assert shown["status"] == "active", shown


# --- a retention period shortened --------------------------------------------------------


def _retention_after(settings: Settings, url: str, days: int) -> None:
    """The retention job's round `days` from now."""

    async def run() -> None:
        async with operator_context(settings, url) as ctx:
            await apply_retention(ctx.db, ctx.keyring, now=datetime.now(UTC) + timedelta(days=days))

    asyncio.run(run())


def _shorten_support(http: httpx.Client, tenant: Any) -> None:
    shortened = http.patch(
        "/v1/tenant/settings",
        json={"retention": {"support": {"delete_after_days": 1}}},
        headers=tenant.auth(),
    )
    _require(shortened.status_code == 200, shortened.text)


def test_control_a_shortened_retention_shreds_on_time(private_vault: Settings) -> None:
    """On the live database: support data past a retention shortened to 1 day is gone."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        _write(http, app, "caller", "ticket", "support")
        _shorten_support(http, tenant)
        _retention_after(private_vault, url, days=2)
        after = _read(http, app, "caller", "ticket")
    assert after.status_code in (404, 410), after.text


def test_a_retention_shortened_after_the_backup_still_binds_after_a_restore(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps: the application writes a support ticket (default retention 3 years + 1
    day); nightly pg_dump; the tenant shortens support's `delete_after_days` to 1 (PATCH
    /v1/tenant/settings, 200); the database is lost and the dump restored; a vault starts
    on it; two days later the retention job runs. Expected: the tenant's deletion
    instruction stands, so the ticket is shredded (404/410) as on the live database.
    Observed before the fix: tenant settings were not instruction entries, so the
    restored vault kept the 3-year policy and the ticket stayed readable (200) for
    years. Now recorded (`retention`, migration 0031)."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        _write(http, app, "caller", "ticket", "support")
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        _shorten_support(http, tenant)

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        _retention_after(restored, restored_url, days=2)
        after = _read(http, app, "caller", "ticket")
    assert after.status_code in (404, 410), after.text


# --- a console session signed out --------------------------------------------------------

_SESSION = "dv_console_session"


def _signed_in_cookie(http: httpx.Client, officer: dict[str, Any]) -> str:
    signed = sign_in(http, officer["secret"])
    _require(signed.status_code == 303, signed.text)
    cookie = http.cookies.get(_SESSION)
    _require(cookie, "a session cookie")
    return str(cookie)


def _sign_out(http: httpx.Client) -> None:
    out = http.post("/console/sign-out", data={"csrf_token": signed_in_token(http)})
    _require(out.status_code == 303, out.text)


def test_control_a_signed_out_console_session_is_dead(private_vault: Settings) -> None:
    """On the live database: the cookie of a signed-out session gets the sign-in page."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server:
        with server.client() as http:
            officer = create_key(http, tenant, ["compliance"], owner="dpo@example.test")
            cookie = _signed_in_cookie(http, officer)
            _require(http.get("/console").status_code == 200, "signed in")
            _sign_out(http)
        with server.client(cookies={_SESSION: cookie}) as stolen:
            page = stolen.get("/console")
    assert page.status_code == 303, page.text


def test_a_console_session_signed_out_after_the_backup_stays_dead(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps: a compliance officer signs in to the console (session cookie); nightly
    pg_dump; the officer signs out (the cookie may have been copied, e.g. on a shared
    machine: signing out is how the officer ends it); the database is lost and the dump
    restored; a vault starts on it; the copied cookie is presented. Expected: dead, like
    a revoked API key after a restore (303 to the sign-in page). Observed before the fix:
    a sign-out was not an instruction entry, so the restored database's session row was
    live again and the cookie opened the console with the officer's compliance scope
    (200) until the session's own expiry. Now recorded (`console_session`)."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        officer = create_key(http, tenant, ["compliance"], owner="dpo@example.test")
        cookie = _signed_in_cookie(http, officer)
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        _sign_out(http)

    restored, restored_url = _restored(private_vault, pg_admin_url, dump)
    with (
        running_server(restored, restored_url, run_jobs=False) as server,
        server.client(cookies={_SESSION: cookie}) as stolen,
    ):
        page = stolen.get("/console")
    assert page.status_code == 303, page.status_code


# --- a webhook endpoint deleted ----------------------------------------------------------


def _hooks_allowed(settings: Settings) -> Settings:
    """Receivers on 127.0.0.1, as in the webhook tests."""
    return dataclasses.replace(settings, webhook_allow_private_networks=True)


def _listed_hooks(http: httpx.Client, tenant: Any) -> list[str]:
    listed = http.get("/v1/webhooks", headers=tenant.auth())
    _require(listed.status_code == 200, listed.text)
    return [hook["id"] for hook in listed.json()["items"]]


def _hook(http: httpx.Client, tenant: Any) -> str:
    created = http.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/retired-crm", "events": ["erasure.completed"]},
        headers=tenant.auth(),
    )
    _require(created.status_code == 201, created.text)
    return str(created.json()["id"])


def test_control_a_deleted_webhook_is_gone(private_vault: Settings) -> None:
    """On the live database: deleted, it is no longer listed."""
    settings = _hooks_allowed(private_vault)
    url = settings.database_url or ""
    tenant = make_tenant(settings, url)
    with running_server(settings, url, run_jobs=False) as server, server.client() as http:
        hook = _hook(http, tenant)
        deleted = http.delete(f"/v1/webhooks/{hook}", headers=tenant.auth())
        _require(deleted.status_code == 204, deleted.text)
        listed = _listed_hooks(http, tenant)
    assert hook not in listed


def test_a_webhook_deleted_after_the_backup_stays_deleted(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps: the tenant registers a webhook endpoint; nightly pg_dump; the tenant deletes
    it (204; its signing secret is shredded: secret_wrapped NULL), e.g. because the
    receiving system was retired; the database is lost and the dump restored; a vault
    starts on it. Expected: the endpoint stays deleted, as an instruction the tenant
    gave. Observed before the fix: deleting a webhook was not an instruction entry, so
    the restored vault listed it again (its row and wrapped secret back), and events
    (ids, statuses, subject_ref_hash) would have gone to the retired URL again. Now
    recorded (`webhook`); delivery itself is not driven here."""
    settings = _hooks_allowed(private_vault)
    url = settings.database_url or ""
    tenant = make_tenant(settings, url)
    dump = tmp_path / "nightly.dump"
    with running_server(settings, url, run_jobs=False) as server, server.client() as http:
        hook = _hook(http, tenant)
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        deleted = http.delete(f"/v1/webhooks/{hook}", headers=tenant.auth())
        _require(deleted.status_code == 204, deleted.text)

    restored, restored_url = _restored(settings, pg_admin_url, dump)
    restored = _hooks_allowed(restored)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        listed = _listed_hooks(http, tenant)
    assert hook not in listed


# --- what held: two restores of the same backup -------------------------------------------


def _publish(settings: Settings, url: str) -> None:
    """The ledger publisher's round (the servers here run no jobs; a request's entry is
    not published inline)."""

    async def run() -> None:
        async with operator_context(settings, url) as ctx:
            signer = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
            await publish_pending(
                ctx.db, ctx.blobs, 0, watermark_for(ctx.root, ctx.blobs), signer=signer
            )

    asyncio.run(run())


def test_an_erasure_cancelled_between_two_restores_stays_cancelled(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Held. The backup lacks an erasure asked for after it (published); the first
    restore brings it back scheduled; the tenant cancels it there within its grace
    period; that database is lost too and the same backup is restored again: the
    erasure is cancelled, not scheduled, and the subject's data is readable."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    dump = tmp_path / "nightly.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        graced = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 24}, headers=tenant.auth()
        )
        _require(graced.status_code == 200, graced.text)
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        _write(http, app, "wavering", "profile")
        _pg("pg_dump", "-Fc", "-f", str(dump), "-d", url)
        asked = http.post("/v1/subjects/wavering/erasure", headers=auth(privacy))
        _require(asked.status_code == 202, asked.text)
        erasure = asked.json()["id"]
    _publish(private_vault, url)

    first, first_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(first, first_url, run_jobs=False) as server, server.client() as http:
        shown = http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()
        _require(shown["status"] == "scheduled", shown)
        cancelled = http.post(f"/v1/erasures/{erasure}/cancel", headers=auth(privacy))
        _require(cancelled.status_code == 200, cancelled.text)

    second, second_url = _restored(private_vault, pg_admin_url, dump)
    with running_server(second, second_url, run_jobs=False) as server, server.client() as http:
        again = http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()
        read = _read(http, app, "wavering", "profile")
    assert again["status"] == "cancelled", again
    assert read.status_code == 200, read.text
