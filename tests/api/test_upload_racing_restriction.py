"""Red team (second outside review): an upload whose subject is restricted while its body
streams completes (201) and leaves a new artefact for the restricted subject. API.md,
restriction of processing: "from then on ... nothing new is written". The upload checks
the restriction only before its body (check_writable), and its completion (artefacts.sql
`complete`) checks the API key and the upload's state, not the subject. A record write
racing a restriction is refused (dv_record_write re-reads the subject under its lock).

Steps: start a chunked upload, wait until its row is 'uploading', restrict the subject,
send the rest. Observed: 201; compliance lists the new artefact of the restricted subject.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg

from tests.api.helpers import auth, create_key, put_record, subject_url, upload
from tests.support import ServerThread, make_tenant


def _uploading(database_url: str, tenant_id: Any) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM artefacts WHERE tenant_id = $1 AND state = 'uploading'",
                    tenant_id,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(run())


def _artefact_keys_live(database_url: str, tenant_id: Any) -> list[tuple[str, bool]]:
    """Each of the tenant's artefacts: its state and whether its data key is still live."""

    async def run() -> list[tuple[str, bool]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT a.state, d.wrapped_key IS NOT NULL AS live FROM artefacts a"
                " JOIN data_keys d ON d.tenant_id = a.tenant_id AND d.id = a.data_key_id"
                " WHERE a.tenant_id = $1",
                tenant_id,
            )
            return [(row["state"], row["live"]) for row in rows]
        finally:
            await conn.close()

    return asyncio.run(run())


def test_an_upload_overtaken_by_a_restriction_writes_nothing(quiet_vault: ServerThread) -> None:
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    with quiet_vault.client() as http, quiet_vault.client() as side:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        compliance = create_key(http, tenant, ["compliance"])
        assert put_record(http, app, "objector", "profile", b'{"a": 1}').status_code == 201
        restricted: list[int] = []

        def body() -> Iterator[bytes]:
            yield b"x" * 65536
            # The upload has read its subject and made its key: restrict now.
            deadline = time.monotonic() + 10
            while not _uploading(quiet_vault.database_url, tenant.id):
                assert time.monotonic() < deadline, "the upload did not start"
                time.sleep(0.05)
            answer = side.post(
                subject_url("objector", "restriction"),
                json={"reason": "objection (Art. 21)"},
                headers=auth(privacy),
            )
            restricted.append(answer.status_code)
            yield b"y" * 65536

        response = upload(http, app, "objector", body())
        listed = http.get(subject_url("objector", "artefacts"), headers=auth(compliance))
    assert restricted == [200]
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert listed.json()["items"] == []
    # What it wrote is shredded at once: its row deleted, its data key destroyed.
    assert _artefact_keys_live(quiet_vault.database_url, tenant.id) == [("deleted", False)]


def test_an_upload_to_a_restricted_subject_is_refused(quiet_vault: ServerThread) -> None:
    """The negative: restricted before the upload starts, it is refused (403)."""
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    with quiet_vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, app, "objector", "profile", b'{"a": 1}').status_code == 201
        restricted = http.post(
            subject_url("objector", "restriction"),
            json={"reason": "objection (Art. 21)"},
            headers=auth(privacy),
        )
        refused = upload(http, app, "objector", b"late")
    assert restricted.status_code == 200
    assert refused.status_code == 403, refused.text
