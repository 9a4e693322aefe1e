"""Idempotency-Key on creating writes (API.md Conventions): the same key and request get
the first answer and nothing happens twice; another request with the key is 422; a
request still running is 409; errors free the key; nothing readable is stored."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

import asyncpg
import pytest

from tests.api.helpers import auth, create_key, data_keys, record_url, subject_url
from tests.support import ServerThread, Tenant, fetchval, problem
from vault.db.database import Database
from vault.errors import Unavailable
from vault.services import idempotency as idempotency_service
from workers.idempotency import expire_idempotency_keys


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"req-{uuid.uuid4().hex}"}


def _hold_body(reference: str = "CASE-1") -> dict[str, Any]:
    return {"reason": "litigation", "reference": reference, "subject_ref": "carol"}


def _owner_rows(database_url: str, tenant: Tenant) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetch(
                "SELECT * FROM idempotency_keys WHERE tenant_id = $1", tenant.id
            )
        finally:
            await conn.close()

    return asyncio.run(run())


def test_repeated_request_gets_the_first_answer_and_creates_one_hold(
    server: ServerThread, tenant: Tenant
) -> None:
    key = _key()
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        first = http.post("/v1/holds", json=_hold_body(), headers={**officer, **key})
        again = http.post("/v1/holds", json=_hold_body(), headers={**officer, **key})
        holds = http.get("/v1/holds", headers=officer).json()["items"]
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert [hold["id"] for hold in holds] == [first.json()["id"]]


def test_the_same_key_with_another_request_is_422(server: ServerThread, tenant: Tenant) -> None:
    key = _key()
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        http.post("/v1/holds", json=_hold_body("CASE-1"), headers={**officer, **key})
        other = http.post("/v1/holds", json=_hold_body("CASE-2"), headers={**officer, **key})
        holds = http.get("/v1/holds", headers=officer).json()["items"]
    assert other.status_code == 422
    assert problem(other)["errors"][0]["field"] == "Idempotency-Key"
    assert len(holds) == 1


def test_keys_are_per_api_key(server: ServerThread, tenant: Tenant) -> None:
    key = _key()
    with server.client() as http:
        one = auth(create_key(http, tenant, ["compliance"]))
        two = auth(create_key(http, tenant, ["compliance"]))
        first = http.post("/v1/holds", json=_hold_body(), headers={**one, **key})
        second = http.post("/v1/holds", json=_hold_body(), headers={**two, **key})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


def test_an_error_is_not_kept_and_frees_the_key(server: ServerThread, tenant: Tenant) -> None:
    key = _key()
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        wrong = http.post("/v1/holds", json={"reason": "boredom"}, headers={**officer, **key})
        fixed = http.post("/v1/holds", json=_hold_body(), headers={**officer, **key})
    assert wrong.status_code == 422
    assert fixed.status_code == 201, fixed.text


def test_retried_upload_is_stored_once(server: ServerThread, tenant: Tenant) -> None:
    key = _key()
    ref = f"u-{uuid.uuid4().hex[:8]}"
    url = subject_url(ref, "artefacts") + "?category=recording"
    with server.client() as http:
        keys = data_keys(http, tenant)
        ingest = {**auth(keys.ingest), **key, "Content-Type": "audio/wav"}
        first = http.post(url, content=b"call audio", headers=ingest)
        again = http.post(url, content=b"call audio", headers=ingest)
        listed = http.get(subject_url(ref, "artefacts"), headers=auth(keys.read)).json()
    assert first.status_code == again.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"]
    assert [item["id"] for item in listed["items"]] == [first.json()["id"]]


def test_retried_record_write_makes_one_version(server: ServerThread, tenant: Tenant) -> None:
    key = _key()
    ref = f"r-{uuid.uuid4().hex[:8]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        headers = {**auth(keys.ingest), **key}
        url = record_url(ref, "profile") + "?category=account"
        answers = [http.put(url, json={"plan": "pro"}, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert {a.json()["version"] for a in answers} == {1}


def test_api_key_creation_replays_the_same_working_key(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    key = _key()
    body = {"name": "recorder", "scopes": ["read"]}
    with server.client() as http:
        first = http.post("/v1/api-keys", json=body, headers={**tenant.auth(), **key})
        again = http.post("/v1/api-keys", json=body, headers={**tenant.auth(), **key})
        works = http.get(subject_url("nobody"), headers=auth(again.json()))
    assert again.json()["secret"] == first.json()["secret"]
    # The secret is shown again, and again no cache may keep it.
    assert again.headers["cache-control"] == first.headers["cache-control"] == "no-store"
    assert works.status_code == 404  # authenticated, the subject just does not exist
    # The database holds neither the Idempotency-Key nor the answer in a readable form.
    [row] = _owner_rows(database_url, tenant)
    stored = bytes(row["answer_sealed"]) + bytes(row["key_id"]) + bytes(row["fingerprint"])
    assert first.json()["secret"].encode() not in stored
    assert key["Idempotency-Key"].encode() not in stored
    assert b"recorder" not in stored


def test_idempotency_key_length_is_checked_at_its_edge(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        longest = http.post(
            "/v1/holds", json=_hold_body(), headers={**officer, "Idempotency-Key": "k" * 255}
        )
        too_long = http.post(
            "/v1/holds", json=_hold_body(), headers={**officer, "Idempotency-Key": "k" * 256}
        )
    assert longest.status_code == 201
    assert too_long.status_code == 422
    assert problem(too_long)["errors"][0]["field"] == "Idempotency-Key"


def test_a_request_still_running_makes_its_twin_wait_with_409(
    server: ServerThread, tenant: Tenant
) -> None:
    key = _key()
    ref = f"s-{uuid.uuid4().hex[:8]}"
    path = subject_url(ref, "artefacts") + "?category=recording"
    with server.client() as http:
        keys = data_keys(http, tenant)
    host, port = server.base_url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {keys.ingest['secret']}\r\n"
        f"Idempotency-Key: {key['Idempotency-Key']}\r\n"
        f"Content-Type: audio/wav\r\nContent-Length: 10\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b"call")  # 6 bytes still owed: the upload is running
        time.sleep(0.5)
        with server.client() as http:
            twin = http.post(
                path,
                content=b"call audio",
                headers={**auth(keys.ingest), **key, "Content-Type": "audio/wav"},
            )
        assert twin.status_code == 409, twin.text
    # The first upload was cut off: the key is free again, and the retry is stored.
    deadline = time.monotonic() + 10
    with server.client() as http:
        while True:
            retry = http.post(
                path,
                content=b"call audio",
                headers={**auth(keys.ingest), **key, "Content-Type": "audio/wav"},
            )
            if retry.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert retry.status_code == 201, retry.text


def test_a_body_over_the_limit_is_413_before_anything_is_kept(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    with server.client() as http:
        keys = data_keys(http, tenant)
        big = http.put(
            record_url("x", "profile") + "?category=account",
            content=b'"' + b"a" * (1024 * 1024) + b'"',
            headers={**auth(keys.ingest), **_key(), "Content-Type": "application/json"},
        )
    assert big.status_code == 413
    assert _owner_rows(database_url, tenant) == []


def test_answers_expire_after_24_hours(
    server: ServerThread, tenant: Tenant, database_url: str
) -> None:
    key = _key()
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        http.post("/v1/holds", json=_hold_body("CASE-1"), headers={**officer, **key})

    async def age_and_expire() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
                " WHERE tenant_id = $1",
                tenant.id,
            )
        finally:
            await conn.close()
        db = await Database.connect(database_url, max_size=2)
        try:
            return await expire_idempotency_keys(db)
        finally:
            await db.close()

    assert asyncio.run(age_and_expire()) >= 1
    assert _owner_rows(database_url, tenant) == []
    with server.client() as http:
        reused = http.post("/v1/holds", json=_hold_body("CASE-2"), headers={**officer, **key})
    assert reused.status_code == 201


def test_a_request_without_the_header_is_not_deduplicated(
    server: ServerThread, tenant: Tenant
) -> None:
    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        ids = {
            http.post("/v1/holds", json=_hold_body(), headers=officer).json()["id"]
            for _ in range(2)
        }
    assert len(ids) == 2


def _logged(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]


def test_an_answer_that_cannot_be_stored_still_goes_out_and_its_claim_stands(
    server: ServerThread, tenant: Tenant, vault_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hold committed, then the database stays unreachable through every try to
    store its answer (5 tries, 1.5 s): the hold's own 201 goes out, not a 503 that would
    invite a retry, and a warning names the request by its id only. The gap that leaves
    (README "Idempotency-Key"): the claim stands unanswered, so the retry with the key
    gets 409 until the claim lapses after an hour, and then the request runs again."""
    key = _key()
    tries: list[int] = []

    async def unreachable(*args: object) -> None:
        tries.append(1)
        raise Unavailable("database unavailable")

    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(idempotency_service, "store_answer", unreachable)
            first = http.post("/v1/holds", json=_hold_body(), headers={**officer, **key})
        retried = http.post("/v1/holds", json=_hold_body(), headers={**officer, **key})
        fetchval(
            server.database_url,
            "UPDATE idempotency_keys SET created_at = created_at - interval '61 minutes'"
            " WHERE tenant_id = $1",
            tenant.id,
        )
        later = http.post("/v1/holds", json=_hold_body(), headers={**officer, **key})
        holds = http.get("/v1/holds", headers=officer).json()["items"]
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert len(tries) == 5
    assert retried.status_code == 409
    assert "still being processed" in problem(retried)["detail"]
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert len(holds) == 2  # the gap: nobody could tell the second from the first
    logged = _logged(capsys)
    warned = [
        {name: value for name, value in line.items() if name != "timestamp"}
        for line in logged
        if line.get("event") == "idempotency_answer_not_stored"
    ]
    assert warned == [
        {
            "event": "idempotency_answer_not_stored",
            "level": "warning",
            "request_id": first.headers["x-request-id"],
            "error_type": "Unavailable",
            "attempts": 5,
        }
    ], warned
    assert not any(key["Idempotency-Key"] in json.dumps(line) for line in logged)


def test_a_release_cut_once_is_retried_and_frees_the_key(
    server: ServerThread, tenant: Tenant
) -> None:
    """An error answer frees the key; a cut on that release's first try does not leave
    it claimed (its repeat would get 409 for an hour): the second try frees it."""
    key = _key()
    real_release = idempotency_service.release
    tries: list[int] = []

    async def cut_once(db: Database, slot: idempotency_service.KeySlot) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise Unavailable("database unavailable")
        await real_release(db, slot)

    with server.client() as http:
        officer = auth(create_key(http, tenant, ["compliance"]))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(idempotency_service, "release", cut_once)
            wrong = http.post("/v1/holds", json={"reason": "boredom"}, headers={**officer, **key})
        again = http.post("/v1/holds", json={"reason": "boredom"}, headers={**officer, **key})
    assert wrong.status_code == again.status_code == 422, again.text
    assert len(tries) == 2
