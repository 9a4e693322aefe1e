"""Attacks on the standing instructions of migration 0031 (vault/services/ledger_standing.py:
restrictions placed and lifted, retention, console sign-outs, webhook deletions), beyond
red team 4's one-change cases (tests/integration/test_redteam4_restore.py, whose helpers
these reuse):

- a restore to a backup taken before a tightening that was loosened again since, and to
  one taken after that loosening: the loosening is the tenant's newest instruction and
  stands in both; what the tighter setting shredded meanwhile stays shredded;
- a restriction of a subject the backup predates keeps new data out;
- starting twice on the restored database changes nothing the first start did not;
- a forged lift of a restriction, unsigned or signed by a key the deployment never
  published, is refused and the restriction stands.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key
from tests.integration.test_ledger_signing import _append, _foreign_signer, _run, _sql
from tests.integration.test_redteam4_restore import (
    _SESSION,
    _hook,
    _hooks_allowed,
    _listed_hooks,
    _pg,
    _publish,
    _read,
    _require,
    _restored,
    _restrict,
    _retention_after,
    _sign_out,
    _signed_in_cookie,
    _write,
)
from tests.support import make_tenant, running_server
from vault.config import Settings
from vault.runtime import OperatorContext, operator_context
from vault.services.ledger import LedgerError, reconcile_on_start
from vault.services.ledger_watermark import watermark_for


def _retention(http: httpx.Client, tenant: Any, category: str, days: int) -> None:
    changed = http.patch(
        "/v1/tenant/settings",
        json={"retention": {category: {"delete_after_days": days}}},
        headers=tenant.auth(),
    )
    _require(changed.status_code == 200, changed.text)


def _write_status(http: httpx.Client, app: dict[str, Any], ref: str) -> int:
    written = http.put(
        f"/v1/subjects/{ref}/records/profile?category=account", json={"value": "again"},
        headers=auth(app),
    )  # fmt: skip
    return written.status_code


def _answers(
    settings: Settings, url: str, tenant: Any, keys: dict[str, dict[str, Any]], cookie: str
) -> dict[str, Any]:
    """What a user relies on, from a vault started on `url` (start-up replays the ledger)."""
    app, officer = keys["app"], keys["officer"]
    with running_server(settings, url, run_jobs=False) as server:
        with server.client() as http:
            shown = http.get("/v1/tenant", headers=tenant.auth()).json()
            answers = {
                "contested": _read(http, app, "contested", "profile").status_code,
                "settled": _read(http, app, "settled", "profile").status_code,
                "latecomer": http.get("/v1/subjects/latecomer", headers=auth(officer)).json()[
                    "status"
                ],
                "latecomer_write": _write_status(http, app, "latecomer"),
                "support_days": shown["settings"]["retention"]["support"]["delete_after_days"],
                "ticket": _read(http, app, "caller", "ticket").status_code in (404, 410),
                "hooks": _listed_hooks(http, tenant),
            }
        with server.client(cookies={_SESSION: cookie}) as stolen:
            answers["console"] = stolen.get("/console").status_code
    return answers


def test_loosenings_since_the_backup_stand_and_a_second_start_changes_nothing(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """A subject restricted; backup A; then the DPO lifts that restriction, restricts
    another subject and lifts that again, restricts a subject the backup does not know,
    the tenant shortens support's retention to 1 day (the retention job shreds a ticket
    two days on) and lengthens it to 30 days again, the officer signs out and the tenant
    deletes a webhook; backup B. Restored from A (started twice) and from B: both lifted
    subjects are readable (the lift is the newest instruction: re-restricting would also
    freeze their deletion), the new subject is restricted and takes no writes, retention
    is 30 days but the ticket shredded under the 1-day policy stays shredded, the
    session is dead and the webhook gone."""
    settings = _hooks_allowed(private_vault)
    url = settings.database_url or ""
    tenant = make_tenant(settings, url)
    before, after = tmp_path / "a.dump", tmp_path / "b.dump"
    with running_server(settings, url, run_jobs=False) as server, server.client() as http:
        keys = {
            "app": create_key(http, tenant, ["ingest", "read"]),
            "officer": create_key(http, tenant, ["compliance"], owner="dpo@example.test"),
        }
        _write(http, keys["app"], "contested", "profile")
        _write(http, keys["app"], "settled", "profile")
        _restrict(http, keys["officer"], "settled")
        _write(http, keys["app"], "caller", "ticket", "support")
        cookie = _signed_in_cookie(http, keys["officer"])
        hook = _hook(http, tenant)
        _pg("pg_dump", "-Fc", "-f", str(before), "-d", url)

        _restrict(http, keys["officer"], "contested")
        for ref in ("contested", "settled"):
            lifted = http.delete(f"/v1/subjects/{ref}/restriction", headers=auth(keys["officer"]))
            _require(lifted.status_code == 200 and lifted.json()["status"] == "active", lifted.text)
        _write(http, keys["app"], "latecomer", "profile")
        _restrict(http, keys["officer"], "latecomer")
        _retention(http, tenant, "support", 1)
        _retention_after(settings, url, days=2)
        _require(_read(http, keys["app"], "caller", "ticket").status_code in (404, 410), "shred")
        _retention(http, tenant, "support", 30)
        _sign_out(http)
        deleted = http.delete(f"/v1/webhooks/{hook}", headers=tenant.auth())
        _require(deleted.status_code == 204, deleted.text)
    _publish(settings, url)  # the retention job's shreds (its destroyed keys)
    _pg("pg_dump", "-Fc", "-f", str(after), "-d", url)

    expected = {
        "contested": 200, "settled": 200, "latecomer": "restricted", "latecomer_write": 403,
        "support_days": 30, "ticket": True,  # shredded: 404 or 410
        "hooks": [], "console": 303,
    }  # fmt: skip
    first, first_url = _restored(settings, pg_admin_url, before)
    first = _hooks_allowed(first)
    assert _answers(first, first_url, tenant, keys, cookie) == expected
    # Started again (a vault killed during its first start): the same.
    assert _answers(first, first_url, tenant, keys, cookie) == expected
    [[subjects]] = _sql(first_url, "SELECT count(*) FROM subjects WHERE restricted_at IS NOT NULL")
    assert subjects == 1  # the latecomer, once; the contested subject lifted

    second, second_url = _restored(settings, pg_admin_url, after)
    assert _answers(_hooks_allowed(second), second_url, tenant, keys, cookie) == expected


@pytest.mark.parametrize("forgery", ["unsigned", "foreign key"])
def test_a_forged_lift_of_a_restriction_is_refused_and_the_restriction_stands(
    private_vault: Settings, forgery: str
) -> None:
    """Someone who can write the ledger bucket appends a lift of a restriction (the
    restriction's own entry, restricted_at null, newer): start-up refuses the object and
    the subject stays restricted."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        _write(http, app, "contester", "profile")
        _restrict(http, officer, "contester")
    ledger = sorted((private_vault.data_dir / "blobs" / "ledger").iterdir())
    recorded = [
        e
        for path in ledger
        for e in json.loads(path.read_bytes())["ledger_entry"]["entries"]
        if e["key_kind"] == "restriction"
    ]
    assert len(recorded) == 1  # the restriction, published before the answer
    lift = {**recorded[0], "outbox_id": 99_999, "destroyed_at": datetime.now(UTC).isoformat()}
    lift["fact"] = {**lift["fact"], "restricted_at": None}
    signer = _foreign_signer(forgery, "")

    async def forge(ctx: OperatorContext) -> int:
        return await _append(ctx.blobs, [lift], signer)

    seq = _run(private_vault, forge)

    async def start() -> int:
        async with operator_context(private_vault, url) as ctx:
            return await reconcile_on_start(ctx.db, ctx.blobs, watermark_for(ctx.root, ctx.blobs))

    with pytest.raises(LedgerError, match=f"ledger entry {seq} (is not signed|does not verify)"):
        asyncio.run(start())
    subject_id = uuid.UUID(recorded[0]["fact"]["subject_id"])
    [[restricted_at]] = _sql(url, "SELECT restricted_at FROM subjects WHERE id = $1", subject_id)
    assert restricted_at is not None  # the restriction stands
