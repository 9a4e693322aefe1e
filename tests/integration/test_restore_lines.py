"""Restoring backups out of order: a backup from a line of history an earlier restore
abandoned.

Backup B1 (day 1), then the application writes more, backup B2 (day 2). The operator
restores B1: the vault runs on from there (a new line of history), and there the
subject is erased; the shred ledger names the keys destroyed *in this line*. Then the
operator restores B2 instead (B1 was the wrong one). B2 holds keys of the subject that
the new line never had, in a generation the new line's erasure covers: the ledger never
named them. An erasure covers the subject's data up to its request, so the start-up
replay must destroy every live key of the generations it covers, not only those named.

Each test takes real `pg_dump`s of a running vault and restores them into fresh
databases (the deployment's data dir, with the shred ledger, is never rolled back);
staging steps raise RuntimeError (tests/integration/test_redteam4_restore.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
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
from tests.jobs import run_worker_pass
from tests.support import make_tenant, running_server
from vault.config import Settings
from workers.deletion_check import find_deletion_violations


def _live_subject_keys(url: str, *, before_current: bool = False) -> int:
    """Live subject keys; `before_current`: only those in a generation before their
    subject's current one."""
    query = "SELECT count(*) FROM subject_keys k WHERE k.wrapped_key IS NOT NULL"
    if before_current:
        query += (
            " AND k.generation < (SELECT s.generation FROM subjects s"
            " WHERE s.tenant_id = k.tenant_id AND s.id = k.subject_id)"
        )

    async def run() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def _violations(url: str) -> list[str]:
    """`datavault check deletion`, with no grace: what is left must be left by design."""
    found = asyncio.run(find_deletion_violations(url, grace=timedelta(0)))
    return [v.kind for v in found]


def _erase(http: httpx.Client, privacy: dict[str, Any], ref: str) -> str:
    asked = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy))
    _require(asked.status_code in (201, 202), asked.text)
    return str(asked.json()["id"])


def test_an_erasure_in_a_later_line_covers_keys_only_an_abandoned_backup_holds(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps: the application writes the subject's profile (category account); backup B1;
    it writes a support ticket for the same subject (a subject key of its own, category
    support, in the same generation); backup B2. The operator restores B1; there the
    subject is erased (shredded, published, completed). The operator then restores B2.
    Expected: neither the profile nor the ticket opens, no subject key is live, and
    `datavault check deletion` is clean. The ticket's key was never named in the
    ledger: the new line never had it."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    b1, b2 = tmp_path / "b1.dump", tmp_path / "b2.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        _write(http, app, "leaver", "profile")
        _pg("pg_dump", "-Fc", "-f", str(b1), "-d", url)
        _write(http, app, "leaver", "ticket", "support")
        _pg("pg_dump", "-Fc", "-f", str(b2), "-d", url)

    line, line_url = _restored(private_vault, pg_admin_url, b1)
    in_b1 = _live_subject_keys(line_url)
    with running_server(line, line_url, run_jobs=False) as server, server.client() as http:
        _require(_read(http, app, "leaver", "ticket").status_code == 404, "B1 has no ticket")
        erasure = _erase(http, privacy, "leaver")
        run_worker_pass(server)
        shown = http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()
        _require(shown["status"] == "completed", shown)
    _require(_live_subject_keys(line_url) == 0, "the new line erased the subject")

    restored, restored_url = _restored(private_vault, pg_admin_url, b2)
    _require(_live_subject_keys(restored_url) == in_b1 + 1, "B2 holds the ticket's key too")
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        reads = {
            name: _read(http, app, "leaver", name).status_code for name in ("profile", "ticket")
        }
        run_worker_pass(server)
        after = http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()
    assert reads["profile"] in (404, 410) and reads["ticket"] in (404, 410), reads
    assert _live_subject_keys(restored_url) == 0
    assert _violations(restored_url) == []
    assert after["status"] == "completed", after


def _lift(http: httpx.Client, officer: dict[str, Any], ref: str) -> None:
    lifted = http.delete(f"/v1/subjects/{ref}/restriction", headers=auth(officer))
    _require(lifted.status_code == 200 and lifted.json()["status"] == "active", lifted.text)


def _restriction_answers(settings: Settings, url: str, keys: dict[str, Any]) -> tuple[str, int]:
    with running_server(settings, url, run_jobs=False) as server, server.client() as http:
        status = http.get("/v1/subjects/contester", headers=auth(keys["officer"])).json()
        read = _read(http, keys["app"], "contester", "profile")
    return status["status"], read.status_code


def test_a_restriction_placed_again_in_the_later_line_outranks_the_lift_an_older_backup_holds(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """Steps: a subject is restricted; backup B1; the DPO lifts the restriction (its
    ledger entry is published before the answer); backup B2; the line is lost. The
    operator restores B1: its start-up replays the lift (the subject is active there);
    in this new line the DPO restricts the subject again. The operator then restores B2
    (which holds the lift as its own state), and later B2 once more.
    Expected, each time: restricted; the application's read gets 403. The newest
    instruction about the subject is the later line's restriction; the lift B2 holds is
    older. (Had the later line not touched the subject, B2's lift would stand: it is
    then the newest instruction, and the later line knew it too.)"""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    b1, b2 = tmp_path / "b1.dump", tmp_path / "b2.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        keys = {
            "app": create_key(http, tenant, ["ingest", "read"]),
            "officer": create_key(http, tenant, ["compliance"], owner="dpo@example.test"),
        }
        _write(http, keys["app"], "contester", "profile")
        _restrict(http, keys["officer"], "contester")
        _pg("pg_dump", "-Fc", "-f", str(b1), "-d", url)
        _lift(http, keys["officer"], "contester")
        _pg("pg_dump", "-Fc", "-f", str(b2), "-d", url)
    _publish(private_vault, url)

    line, line_url = _restored(private_vault, pg_admin_url, b1)
    _require(_restriction_answers(line, line_url, keys) == ("active", 200), "B1 learns the lift")
    with running_server(line, line_url, run_jobs=False) as server, server.client() as http:
        _restrict(http, keys["officer"], "contester")
    _publish(line, line_url)

    first, first_url = _restored(private_vault, pg_admin_url, b2)
    after_first = _restriction_answers(first, first_url, keys)
    again, again_url = _restored(private_vault, pg_admin_url, b2)
    after_again = _restriction_answers(again, again_url, keys)
    assert after_first == ("restricted", 403), after_first
    assert after_again == ("restricted", 403), after_again


def test_a_key_only_the_abandoned_backup_holds_is_kept_by_a_hold_then_shredded_on_release(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """As the first test, with a hold over the subject's support data placed before B1:
    restored from B2 after the new line's erasure (which kept nothing: that line had no
    support data), the ticket's key is kept by the hold, not shredded, and the erasure is
    `held` (the ticket compliance-only); `datavault check deletion` is clean. Once the
    hold is released the next pass shreds it and the erasure completes."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    b1, b2 = tmp_path / "b1.dump", tmp_path / "b2.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        officer = create_key(http, tenant, ["compliance"], owner="dpo@example.test")
        _write(http, app, "leaver", "profile")
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": "leaver", "categories": ["support"],
                  "reason": "fraud_investigation", "reference": "CASE-1"},
            headers=auth(officer),
        )  # fmt: skip
        _require(placed.status_code == 201, placed.text)
        _pg("pg_dump", "-Fc", "-f", str(b1), "-d", url)
        _write(http, app, "leaver", "ticket", "support")
        _pg("pg_dump", "-Fc", "-f", str(b2), "-d", url)

    line, line_url = _restored(private_vault, pg_admin_url, b1)
    with running_server(line, line_url, run_jobs=False) as server, server.client() as http:
        erasure = _erase(http, privacy, "leaver")
        run_worker_pass(server)
        shown = http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()
        _require(shown["status"] == "completed", shown)

    restored, restored_url = _restored(private_vault, pg_admin_url, b2)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        run_worker_pass(server)
        held = http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()
        kept = {
            "profile": _read(http, app, "leaver", "profile").status_code,
            "ticket": _read(http, app, "leaver", "ticket").status_code,
            "ticket_compliance": _read(http, officer, "leaver", "ticket").status_code,
        }
        violations = _violations(restored_url)
        released = http.post(
            f"/v1/holds/{placed.json()['id']}/release", json={"reason": "closed"},
            headers=auth(officer),
        )  # fmt: skip
        _require(released.status_code == 200, released.text)
        run_worker_pass(server)
        done = http.get(f"/v1/erasures/{erasure}", headers=auth(privacy)).json()
        ticket_after = _read(http, app, "leaver", "ticket").status_code
    assert held["status"] == "held", held
    assert kept == {"profile": 410, "ticket": 403, "ticket_compliance": 200}, kept
    assert violations == []
    assert done["status"] == "completed", done
    assert ticket_after in (404, 410)
    assert _live_subject_keys(restored_url) == 0
    assert _violations(restored_url) == []


def test_a_backup_behind_the_later_lines_generations_catches_up_and_takes_new_writes(
    private_vault: Settings, pg_admin_url: str, tmp_path: Path
) -> None:
    """As the first test, but in the new line the subject is written to again after its
    erasure and erased a second time: B2's generation counter for the subject (1) is
    below both erasures'. Restored from B2: the ticket of the abandoned line is shredded
    (the first erasure covers it), the subject's next write lands after both erasures'
    generations and reads back, and `datavault check deletion` is clean."""
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    b1, b2 = tmp_path / "b1.dump", tmp_path / "b2.dump"
    with running_server(private_vault, url, run_jobs=False) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        _write(http, app, "leaver", "profile")
        _pg("pg_dump", "-Fc", "-f", str(b1), "-d", url)
        _write(http, app, "leaver", "ticket", "support")
        _pg("pg_dump", "-Fc", "-f", str(b2), "-d", url)

    line, line_url = _restored(private_vault, pg_admin_url, b1)
    with running_server(line, line_url, run_jobs=False) as server, server.client() as http:
        for _ in range(2):
            _erase(http, privacy, "leaver")
            run_worker_pass(server)
            _write(http, app, "leaver", "profile")
        _erase(http, privacy, "leaver")
        run_worker_pass(server)

    restored, restored_url = _restored(private_vault, pg_admin_url, b2)
    with running_server(restored, restored_url, run_jobs=False) as server, server.client() as http:
        ticket = _read(http, app, "leaver", "ticket").status_code
        written = http.put(
            "/v1/subjects/leaver/records/profile?category=account", json={"value": "new"},
            headers=auth(app),
        )  # fmt: skip
        read = _read(http, app, "leaver", "profile")
        run_worker_pass(server)
    assert ticket in (404, 410), ticket
    assert written.status_code == 201, written.text
    assert read.status_code == 200 and read.json()["value"] == "new", read.text
    assert _live_subject_keys(restored_url, before_current=True) == 0  # only the new write's
    assert _violations(restored_url) == []
