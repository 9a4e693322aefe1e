"""Shared by the webhook delivery tests: a vault with private networks allowed (its jobs
off), per-test cleanup of the queue, and small steps over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import auth, create_key, put_record, subject_url
from tests.support import ServerThread, Tenant, private_server
from tests.webhook_receiver import Received
from vault.domain.webhooks import EventType

ALL_EVENTS = [e.value for e in EventType]


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Receivers on 127.0.0.1: private networks allowed, as in a test or an internal
    deployment. Jobs off: the tests run the passes by hand (tests/jobs.py)."""
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("webhooks"), webhook_allow_private_networks=True
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def no_queue_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's pending deliveries end with it: a later test's receiver may get a
    stopped one's port, and must receive only its own test's events."""
    yield
    if "vault" in request.fixturenames:
        server: ServerThread = request.getfixturevalue("vault")
        asyncio.run(cancel_pending(server.database_url))


async def cancel_pending(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE webhook_deliveries SET status = 'cancelled' "
                           "WHERE status = 'pending'")  # fmt: skip
    finally:
        await conn.close()


class Keys:
    def __init__(self, http: httpx.Client, tenant: Tenant) -> None:
        self.tenant = tenant
        self.ingest = create_key(http, tenant, ["ingest"])
        self.erasure = create_key(http, tenant, ["erasure"])
        self.compliance = create_key(http, tenant, ["compliance"])


def register(
    http: httpx.Client, tenant: Tenant, url: str, events: list[str] | None = None
) -> tuple[str, str]:
    """(webhook id, secret)."""
    answered = http.post(
        "/v1/webhooks", json={"url": url, "events": events or ALL_EVENTS}, headers=tenant.auth()
    )
    assert answered.status_code == 201, answered.text
    return answered.json()["id"], answered.json()["secret"]


def write(http: httpx.Client, keys: Keys, ref: str) -> None:
    answered = put_record(http, keys.ingest, ref, "profile", b'{"plan": "pro"}')
    assert answered.status_code == 201, answered.text


def erase(http: httpx.Client, keys: Keys, ref: str) -> str:
    answered = http.post(subject_url(ref, "erasure"), headers=auth(keys.erasure))
    assert answered.status_code == 202, answered.text
    erasure_id: str = answered.json()["id"]
    return erasure_id


def place_hold(http: httpx.Client, keys: Keys, ref: str, **fields: Any) -> str:
    body = {"subject_ref": ref, "categories": ["account"], "reason": "billing",
            "reference": "case-77", "note": "private note", **fields}  # fmt: skip
    answered = http.post("/v1/holds", json=body, headers=auth(keys.compliance))
    assert answered.status_code == 201, answered.text
    hold_id: str = answered.json()["id"]
    return hold_id


def deliveries(http: httpx.Client, tenant: Tenant, webhook_id: str) -> list[dict[str, Any]]:
    answered = http.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=tenant.auth())
    assert answered.status_code == 200, answered.text
    items: list[dict[str, Any]] = answered.json()["items"]
    return items


def types(received: list[Received], secret: str) -> list[tuple[str, str | None]]:
    """(type, erasure or hold id) of each verified delivery, in arrival order."""
    out = []
    for item in received:
        payload = item.verified(secret)
        data = payload["data"]
        out.append((payload["type"], data.get("erasure_id") or data.get("hold_id")))
    return out


def assert_no_subject_reference(received: list[Received], *refs: str) -> None:
    for item in received:
        text = item.body.decode()
        for ref in refs:
            assert ref not in text
        assert "subject_ref" not in text  # neither the reference nor its hash
        assert set(item.payload) == {"type", "timestamp", "data"}
