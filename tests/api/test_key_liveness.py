"""Record requests recognise a key verified in the last minute from memory and leave its
liveness (revocation, tenant closure) to the statement that reads or writes (migration
0011, `dv_require_live_key`). Revocation must still apply to the very next request, even
when another process revoked the key (here: the database row changed directly)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import (
    access_log,
    auth,
    create_key,
    from_ip,
    put_record,
    record_url,
    rfc3339,
)
from tests.api.helpers import subject_url as records_of
from tests.support import ServerThread, Tenant, problem


def _own_address(http: httpx.Client) -> None:
    """Each test from an address of its own: the failed-authentication throttle counts per
    IP, and refusals here are failures."""
    http.headers.update(from_ip(f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"))


def _owner_execute(database_url: str, query: str, *args: object) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(database_url)  # the owner: another process's change
        try:
            await conn.execute(query, *args)
        finally:
            await conn.close()

    asyncio.run(run())


def _revoke_elsewhere(database_url: str, tenant: Tenant, key: dict[str, Any]) -> None:
    revoking = "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2"
    _owner_execute(database_url, revoking, tenant.id, uuid.UUID(key["id"]))


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, dict[str, Any]]:
    listed = http.get("/v1/api-keys", headers=tenant.auth())
    return {k["id"]: k for k in listed.json()["items"]}


def _warm(http: httpx.Client, key: dict[str, Any], ref: str) -> None:
    """Use the key on every record route, so this process knows it."""
    put_record(http, key, ref, "profile", b'{"v": 1}').raise_for_status()
    assert http.get(record_url(ref, "profile"), headers=auth(key)).status_code == 200
    assert http.get(records_of(ref, "records"), headers=auth(key)).status_code == 200


def _remembered_key(http: httpx.Client, tenant: Tenant, ref: str, **fields: Any) -> dict[str, Any]:
    """An ingest+read key, used from this test's own address on every record route, so
    this process recognises it from memory from now on."""
    _own_address(http)
    key = create_key(http, tenant, ["ingest", "read"], **fields)
    _warm(http, key, ref)
    return key


def _record_requests(http: httpx.Client, key: dict[str, Any], ref: str) -> list[httpx.Response]:
    """A replace, a read, a list, and a new record (the locked write path)."""
    return [
        put_record(http, key, ref, "profile", b'{"v": 2}'),
        http.get(record_url(ref, "profile"), headers=auth(key)),
        http.get(records_of(ref, "records"), headers=auth(key)),
        put_record(http, key, ref, "brand-new", b'{"v": 3}'),
    ]


def test_key_revoked_elsewhere_is_refused_by_the_next_record_request(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    ref = f"user-{uuid.uuid4().hex[:12]}"
    with server.client() as http:
        key = _remembered_key(http, tenant, ref)
        checker = create_key(http, tenant, ["read"])
        _revoke_elsewhere(database_url, tenant, key)
        refused = _record_requests(http, key, ref)
        still = http.get(record_url(ref, "profile"), headers=auth(checker))
        never_written = http.get(record_url(ref, "brand-new"), headers=auth(checker))
    assert [r.status_code for r in refused] == [401, 401, 401, 401]
    for response in refused:
        assert problem(response)["status"] == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(still.content) == {"v": 1}
    assert never_written.status_code == 404


def test_key_of_a_tenant_closed_elsewhere_is_refused_by_the_next_record_request(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    ref = f"user-{uuid.uuid4().hex[:12]}"
    with server.client() as http:
        key = _remembered_key(http, tenant, ref)
        _owner_execute(
            database_url, "UPDATE tenants SET status = 'closed' WHERE id = $1", tenant.id
        )
        refused = _record_requests(http, key, ref)
    assert [r.status_code for r in refused] == [401, 401, 401, 401]


def test_refused_remembered_key_is_logged_as_an_attempt_not_a_use(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    ref = f"user-{uuid.uuid4().hex[:12]}"
    with server.client() as http:
        key = _remembered_key(http, tenant, ref)
        auditor = create_key(http, tenant, ["compliance"])
        used = _keys(http, tenant)
        _revoke_elsewhere(database_url, tenant, key)
        time.sleep(0.05)
        refused = http.get(record_url(ref, "profile"), headers=auth(key))
        assert refused.status_code == 401
        after = {
            k["id"]: k for k in http.get("/v1/api-keys", headers=tenant.auth()).json()["items"]
        }
        entries = access_log(http, auditor, api_key_id=key["id"])
    assert after[key["id"]]["last_used_at"] == used[key["id"]]["last_used_at"]
    assert entries[0]["status"] == 401
    assert entries[0]["route"] == "/v1/subjects/{ref}/records/{name}"


def test_remembered_key_is_refused_once_it_expires(server: ServerThread, tenant: Tenant) -> None:
    ref = f"user-{uuid.uuid4().hex[:12]}"
    expires = datetime.now(UTC) + timedelta(seconds=2)
    with server.client() as http:
        key = _remembered_key(http, tenant, ref, expires_at=rfc3339(expires))
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
        refused = _record_requests(http, key, ref)
    assert [r.status_code for r in refused] == [401, 401, 401, 401]


def test_remembered_key_keeps_its_scopes(server: ServerThread, tenant: Tenant) -> None:
    ref = f"user-{uuid.uuid4().hex[:12]}"
    with server.client() as http:
        _own_address(http)
        writer = create_key(http, tenant, ["ingest"])
        put_record(http, writer, ref, "profile", b'{"v": 1}').raise_for_status()
        put_record(http, writer, ref, "profile", b'{"v": 2}').raise_for_status()
        reads = [
            http.get(record_url(ref, "profile"), headers=auth(writer)),
            http.get(records_of(ref, "records"), headers=auth(writer)),
        ]
    assert [r.status_code for r in reads] == [403, 403]


def test_erasure_request_with_a_key_revoked_elsewhere_is_refused_and_erases_nothing(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    """An erasure request also recognises its key from memory and checks its liveness in
    the statement that requests (dv_erasure_request, migration 0028)."""
    ref = f"user-{uuid.uuid4().hex[:12]}"
    with server.client() as http:
        _own_address(http)
        privacy = create_key(http, tenant, ["erasure"])
        officer = create_key(http, tenant, ["compliance"])
        warm = http.post(f"/v1/subjects/warm-{ref}/erasure", headers=auth(privacy))
        assert warm.status_code == 202, warm.text
        _revoke_elsewhere(database_url, tenant, privacy)
        refused = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy))
        listed = http.get(
            "/v1/erasures", params={"subject_ref": ref}, headers=auth(officer)
        ).json()["items"]
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert listed == []
