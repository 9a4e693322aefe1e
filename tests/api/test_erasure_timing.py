"""An erasure with no grace period and no hold is done within a minute (DESIGN.md "Deletion
guarantees": a non-held erasure completes within a minute of `not_before`), and afterwards
the subject's artefact blobs leave the blob store ("Blob deletion follows, as hygiene").

The one API test of the scheduler itself: a vault that runs its background jobs, as
`datavault serve` does, completes the erasure on its own. Every other test runs the jobs
by hand (tests/jobs.py)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.api.helpers import (
    MIB,
    artefact_url,
    auth,
    blob_files,
    blob_root,
    create_key,
    data_keys,
    parse_time,
    put_record,
    uploaded,
)
from tests.support import ServerThread, make_tenant, running_server
from vault.config import Settings
from vault.runtime import operator_context
from workers.sweeper import sweep

WITHIN = timedelta(seconds=60)


def _sweep_once(settings: Settings, database_url: str) -> None:
    """One pass of the blob sweeper, the job every vault process runs each minute."""

    async def run() -> None:
        async with operator_context(settings, database_url) as ctx:
            await sweep(ctx.db, ctx.blobs, ctx.keyring)

    asyncio.run(run())


@pytest.fixture
def server(private_vault: Settings) -> Iterator[ServerThread]:
    """A vault with its jobs running, on a database of its own."""
    with running_server(private_vault, private_vault.database_url or "", run_jobs=True) as vault:
        yield vault


def test_erasure_without_grace_or_hold_destroys_the_keys_within_a_minute_and_the_blobs_go(
    server: ServerThread,
) -> None:
    settings, database_url = server.settings, server.database_url
    tenant = make_tenant(settings, database_url)
    ref = f"leaver-{uuid.uuid4().hex[:10]}"
    root = blob_root(settings)
    with server.client() as http:
        keys = data_keys(http, tenant)
        privacy = auth(create_key(http, tenant, ["erasure"]))
        shown_tenant = http.get("/v1/tenant", headers=tenant.auth()).json()
        assert shown_tenant["settings"]["erasure_grace_hours"] == 0, shown_tenant
        artefacts = [
            uploaded(http, keys.ingest, ref, os.urandom(MIB + 17), category="recording"),
            uploaded(http, keys.ingest, ref, b"ticket text", category="support"),
        ]
        assert put_record(http, keys.ingest, ref, "profile", b'{"n": 1}').status_code == 201
        for artefact in artefacts:
            assert blob_files(root, artefact["id"]), "the blob path names the artefact id"

        started = time.monotonic()
        requested = http.post(f"/v1/subjects/{ref}/erasure", headers=privacy)
        assert requested.status_code == 202, requested.text
        erasure_id = requested.json()["id"]
        shown: dict[str, Any] = {}
        # Polled for longer than the promise, so a slow erasure fails with its real time.
        while time.monotonic() - started < 2 * WITHIN.total_seconds():
            shown = http.get(f"/v1/erasures/{erasure_id}", headers=privacy).json()
            if shown["status"] == "completed":
                break
            time.sleep(0.2)
        observed = time.monotonic() - started
        contents = [
            http.get(artefact_url(ref, a["id"], "content"), headers=auth(keys.read))
            for a in artefacts
        ]

    assert shown["status"] == "completed", shown
    assert observed < WITHIN.total_seconds(), f"completed after {observed:.1f} s"
    requested_at = parse_time(shown["requested_at"])
    assert parse_time(shown["not_before"]) - requested_at < timedelta(seconds=1), shown
    assert {s["category"] for s in shown["shredded"]} >= {"recording", "support", "account"}
    destroyed = [parse_time(s["destroyed_at"]) for s in shown["shredded"]]
    assert min(destroyed) >= requested_at, shown
    assert max(destroyed) - requested_at < WITHIN, shown
    assert parse_time(shown["completed_at"]) - requested_at < WITHIN, shown
    assert shown["held"] == [] and shown["retained"] == [], shown
    for content in contents:
        assert content.status_code in (404, 410), content.status_code

    # The blobs are ciphertext under destroyed keys; the sweeper's next pass removes them.
    _sweep_once(settings, database_url)
    for artefact in artefacts:
        assert blob_files(root, artefact["id"]) == [], artefact["id"]
