"""Red team 17: retention settings as an attack on what is kept. A single admin key that
lowers `delete_after_days` must not destroy what statutory retention (or its pending,
not-yet-effective shortening) or a hold keeps; odd values are 422, never 500. Jobs run
by hand with a moved clock on a vault of the module's own."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.helpers import auth, create_key, put_record, record_url, uploaded
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, make_tenant, problem
from vault.runtime import operator_context
from workers.retention import apply_retention

CLOSURE_DELAY_DAYS = 60  # Settings' default, which the quiet vault runs with


@pytest.fixture
def server(quiet_vault: ServerThread) -> ServerThread:
    return quiet_vault


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


def _patch(http: httpx.Client, tenant: Tenant, body: dict[str, Any]) -> httpx.Response:
    return http.patch("/v1/tenant/settings", json=body, headers=tenant.auth())


def test_lowering_both_retention_limits_at_once_does_not_shred_older_statutory_data(
    server: ServerThread, tenant: Tenant
) -> None:
    """Billing is kept at least 7 years. One admin key sets keep and delete to 1 day in
    one PATCH: the shortened keep binds older data only after the closure delay, so the
    retention job must not shred last week's invoice two days later."""
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, "rt17-inv", "invoice", b'{"n": 1}', "billing").is_success
        changed = _patch(
            http, tenant,
            {"retention": {"billing": {"delete_after_days": 1, "keep_at_least_days": 1}}},
        )  # fmt: skip
        run_worker_pass(server, days=2)
        kept = http.get(record_url("rt17-inv", "invoice"), headers=auth(officer))
        run_worker_pass(server, days=CLOSURE_DELAY_DAYS + 1)
        later = http.get(record_url("rt17-inv", "invoice"), headers=auth(officer))
    assert changed.status_code == 200, changed.text
    assert [p["category"] for p in changed.json()["pending"]] == ["billing"]
    assert kept.status_code == 200, kept.text
    assert later.status_code in (404, 410)


def test_lowering_delete_after_days_spares_what_a_category_hold_covers(
    server: ServerThread, tenant: Tenant
) -> None:
    """A tenant-wide hold on `transcript` only; retention lowered to 1 day: the
    transcripts stay, the recordings (not held) go."""
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        transcript = uploaded(http, app, "rt17-ret", b"words", category="transcript")
        recording = uploaded(http, app, "rt17-ret", b"sound", category="recording")
        placed = http.post(
            "/v1/holds",
            json={"categories": ["transcript"], "reason": "regulatory", "reference": "R"},
            headers=auth(officer),
        )
        assert placed.status_code == 201, placed.text
        lowered = _patch(
            http, tenant,
            {"retention": {"transcript": {"delete_after_days": 1},
                           "recording": {"delete_after_days": 1}}},
        )  # fmt: skip
        run_worker_pass(server, days=2)
        kept = http.get(
            f"/v1/subjects/rt17-ret/artefacts/{transcript['id']}/content", headers=auth(officer)
        )
        gone = http.get(
            f"/v1/subjects/rt17-ret/artefacts/{recording['id']}/content", headers=auth(officer)
        )
    assert lowered.status_code == 200, lowered.text
    assert kept.status_code == 200 and kept.content == b"words"
    assert gone.status_code in (404, 410)


@pytest.mark.parametrize(
    "rules",
    [
        {"delete_after_days": -1},
        {"delete_after_days": 0},
        {"keep_at_least_days": 0},
        {"keep_at_least_days": -30},
        {"delete_after_days": 36_501},
        {"delete_after_days": 10**30},
        {"keep_at_least_days": 2**63},
        {"delete_after_days": 1.5},
        {"delete_after_days": 30.0},
        {"delete_after_days": "30"},
        {"delete_after_days": True},
        {"delete_after_days": [30]},
        {"keep_at_least_days": 10, "delete_after_days": 5},
        {"purge_after_days": 5},
        "30",
        None,
    ],
)
def test_odd_retention_values_are_422_naming_the_field(
    server: ServerThread, tenant: Tenant, rules: Any
) -> None:
    with server.client() as http:
        before = http.get("/v1/tenant", headers=tenant.auth()).json()
        answer = _patch(http, tenant, {"retention": {"recording": rules}})
        after = http.get("/v1/tenant", headers=tenant.auth()).json()
    assert answer.status_code == 422, answer.text
    assert "retention" in [e["field"] for e in problem(answer)["errors"]]
    assert after == before


@pytest.mark.parametrize(
    "retention",
    [{"Recording": {"delete_after_days": 5}}, {"no-such": {"delete_after_days": 5}}, [], "x"],
)
def test_retention_for_an_odd_category_is_422(
    server: ServerThread, tenant: Tenant, retention: Any
) -> None:
    with server.client() as http:
        answer = _patch(http, tenant, {"retention": retention})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_largest_retention_is_accepted_and_data_uploads_under_it(
    server: ServerThread, tenant: Tenant
) -> None:
    """The edge value itself works end to end: an upload's expires_at 100 years out."""
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        edge = _patch(
            http, tenant,
            {"retention": {"recording": {"delete_after_days": 36_500,
                                         "keep_at_least_days": 36_500}}},
        )  # fmt: skip
        stored = uploaded(http, app, "rt17-edge", b"long kept")
    assert edge.status_code == 200, edge.text
    assert stored["expires_at"] is not None and stored["expires_at"] > "2126"


def test_retention_runs_out_at_its_edge_not_a_day_early(
    server: ServerThread, tenant: Tenant
) -> None:
    """delete_after_days = 3: a minute before the artefact is 3 days old it is kept, a
    minute after it is gone (expires_at says when)."""
    with server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        assert _patch(
            http, tenant, {"retention": {"transcript": {"delete_after_days": 3}}}
        ).status_code == 200  # fmt: skip
        stored = uploaded(http, app, "rt17-edge-day", b"words", category="transcript")
        expires = datetime.fromisoformat(stored["expires_at"].replace("Z", "+00:00"))
        created = datetime.fromisoformat(stored["created_at"].replace("Z", "+00:00"))
        url = f"/v1/subjects/rt17-edge-day/artefacts/{stored['id']}/content"
        before = _retention_at(server, expires - timedelta(minutes=1))
        kept = http.get(url, headers=auth(app))
        after = _retention_at(server, expires + timedelta(minutes=1))
        gone = http.get(url, headers=auth(app))
    assert expires - created == timedelta(days=3)
    assert kept.status_code == 200, (before, kept.text)
    assert gone.status_code in (404, 410), (after, gone.text)


def _retention_at(server: ServerThread, moment: datetime) -> int:
    async def run() -> int:
        async with operator_context(server.settings, server.database_url) as ctx:
            return int(await apply_retention(ctx.db, ctx.keyring, now=moment))

    return asyncio.run(run())
