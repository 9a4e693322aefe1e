"""What keeps data, and who may read what is kept: a shortened statutory retention binds
older data only after the closure delay, restriction freezes deletion, and compliance
reads the record versions a hold kept. Jobs run by hand with a moved clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.api.helpers import (
    auth,
    create_key,
    put_record,
    record_url,
    subject_url,
    upload,
)
from tests.jobs import deletion_violations, run_worker_pass
from tests.support import ServerThread, make_tenant, problem

CLOSURE_DELAY_DAYS = 60  # Settings' default, which the quiet vault runs with


def _keys(http: httpx.Client, vault: ServerThread) -> dict[str, Any]:
    tenant = make_tenant(vault.settings, vault.database_url)
    return {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "reader": create_key(http, tenant, ["read"]),
        "privacy": create_key(http, tenant, ["erasure"]),
        "officer": create_key(http, tenant, ["compliance"]),
        "admin": tenant.auth(),
    }


def _patch(http: httpx.Client, keys: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    response = http.patch("/v1/tenant/settings", json=body, headers=keys["admin"])
    assert response.status_code == 200, response.text
    settings: dict[str, Any] = response.json()
    return settings


def _status(http: httpx.Client, keys: dict[str, Any], erasure_id: str) -> str:
    shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(keys["privacy"]))
    status: str = shown.json()["status"]
    return status


def test_removing_statutory_retention_waits_the_closure_delay_for_older_data(
    quiet_vault: ServerThread,
) -> None:
    vault = quiet_vault
    with vault.client() as http:
        keys = _keys(http, vault)
        assert put_record(http, keys["app"], "ola", "invoice", b'{"n": 1}', "billing").is_success
        erasure = http.post(subject_url("ola", "erasure"), headers=auth(keys["privacy"])).json()
        run_worker_pass(vault)
        assert _status(http, keys, erasure["id"]) == "held"
        settings = _patch(
            http, keys,
            {"retention": {"billing": {"delete_after_days": None, "keep_at_least_days": None}}},
        )  # fmt: skip
        run_worker_pass(vault)
        still_held = _status(http, keys, erasure["id"])
        kept = http.get(record_url("ola", "invoice"), headers=auth(keys["officer"]))
        run_worker_pass(vault, days=CLOSURE_DELAY_DAYS + 1)
        later = _status(http, keys, erasure["id"])
        gone = http.get(record_url("ola", "invoice"), headers=auth(keys["officer"]))
    assert still_held == "held" and kept.status_code == 200
    assert later == "completed" and gone.status_code in (404, 410)
    pending = settings["pending"]
    assert [(p["category"], p["keep_at_least_days"]) for p in pending] == [("billing", None)]
    effective = datetime.fromisoformat(pending[0]["effective_at"])
    assert effective - datetime.now(UTC) > timedelta(days=CLOSURE_DELAY_DAYS - 1)


def test_setting_the_old_retention_back_cancels_the_pending_change(
    quiet_vault: ServerThread,
) -> None:
    with quiet_vault.client() as http:
        keys = _keys(http, quiet_vault)
        _patch(http, keys, {"retention": {"billing": {"keep_at_least_days": 10}}})
        restored = _patch(http, keys, {"retention": {"billing": {"keep_at_least_days": 2557}}})
    assert restored["pending"] == []


def test_shortened_retention_binds_data_written_after_the_change_at_once(
    quiet_vault: ServerThread,
) -> None:
    vault = quiet_vault
    with vault.client() as http:
        keys = _keys(http, vault)
        _patch(
            http, keys,
            {"retention": {"billing": {"delete_after_days": 5, "keep_at_least_days": 5}}},
        )  # fmt: skip
        assert put_record(http, keys["app"], "pia", "invoice", b"{}", "billing").is_success
        run_worker_pass(vault, days=6)
        gone = http.get(record_url("pia", "invoice"), headers=auth(keys["officer"]))
    assert gone.status_code in (404, 410)


def test_restriction_freezes_deletion_but_not_an_erasure(quiet_vault: ServerThread) -> None:
    vault = quiet_vault
    with vault.client() as http:
        keys = _keys(http, vault)
        call = upload(http, keys["app"], "rex", b"call", "recording").json()
        assert put_record(http, keys["app"], "rex", "profile", b'{"v": 1}').is_success
        restricted = http.post(
            subject_url("rex", "restriction"), json={"reason": "disputed accuracy"},
            headers=auth(keys["officer"]),
        )  # fmt: skip
        delete_call = http.delete(
            subject_url("rex", "artefacts", call["id"]), headers=auth(keys["app"])
        )
        delete_record = http.delete(record_url("rex", "profile"), headers=auth(keys["app"]))
        run_worker_pass(vault, days=120)  # recordings expire after 90 days
        content = subject_url("rex", "artefacts", call["id"], "content")
        still_there = http.get(content, headers=auth(keys["officer"]))
        erasure = http.post(subject_url("rex", "erasure"), headers=auth(keys["privacy"])).json()
        run_worker_pass(vault)
        erased = _status(http, keys, erasure["id"])
        after = http.get(content, headers=auth(keys["officer"]))
    assert restricted.status_code == 200
    for refused in (delete_call, delete_record):
        assert refused.status_code == 409, refused.text
        assert problem(refused)["type"].endswith("/restricted")
    assert still_there.status_code == 200 and still_there.content == b"call"
    assert erased == "completed" and after.status_code in (404, 410)
    assert deletion_violations(vault) == []


def test_compliance_reads_the_record_versions_a_hold_kept(quiet_vault: ServerThread) -> None:
    vault = quiet_vault
    with vault.client() as http:
        keys = _keys(http, vault)
        assert put_record(http, keys["app"], "sam", "address", b'{"city": "A"}').is_success
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": "sam", "reason": "fraud_investigation", "reference": "F-7"},
            headers=auth(keys["officer"]),
        ).json()
        assert put_record(http, keys["app"], "sam", "address", b'{"city": "B"}').is_success
        versions_url = record_url("sam", "address") + "/versions"
        listed = http.get(versions_url, headers=auth(keys["officer"]))
        old = http.get(versions_url + "/1", headers=auth(keys["officer"]))
        by_app = http.get(versions_url + "/1", headers=auth(keys["app"]))
        missing = http.get(versions_url + "/9", headers=auth(keys["officer"]))
        released = http.post(
            f"/v1/holds/{hold['id']}/release", json={"reason": "closed"},
            headers=auth(keys["officer"]),
        )  # fmt: skip
        run_worker_pass(vault)
        after_release = http.get(versions_url + "/1", headers=auth(keys["officer"]))
        listed_after = http.get(versions_url, headers=auth(keys["officer"])).json()["items"]
    items = listed.json()["items"]
    assert [(i["version"], i["hold_ids"]) for i in items] == [(1, [hold["id"]])]
    assert old.status_code == 200 and old.json() == {"city": "A"}
    assert by_app.status_code == 403
    assert missing.status_code == 404
    assert released.status_code == 200
    assert after_release.status_code == 410 and listed_after == []


def test_what_an_erasure_keeps_only_that_erasure_destroys(quiet_vault: ServerThread) -> None:
    """Billing kept by statutory retention after an erasure: the application's ingest key
    can neither delete it nor shred it by writing a new life's record of the same name,
    and compliance can still restrict the subject."""
    vault = quiet_vault
    with vault.client() as http:
        keys = _keys(http, vault)
        app, officer = keys["app"], keys["officer"]
        assert put_record(http, app, "ret", "invoice", b'{"eur": 42}', "billing").is_success
        kept_call = upload(http, app, "ret", b"billing call", "billing").json()
        erasure = http.post(subject_url("ret", "erasure"), headers=auth(keys["privacy"])).json()
        run_worker_pass(vault)
        deleted_artefact = http.delete(
            subject_url("ret", "artefacts", kept_call["id"]), headers=auth(app)
        )
        deleted_record = http.delete(record_url("ret", "invoice"), headers=auth(app))
        new_life = put_record(http, app, "ret", "invoice", b'{"eur": 1}', "billing")
        run_worker_pass(vault)
        versions = http.get(record_url("ret", "invoice") + "/versions", headers=auth(officer))
        old = http.get(record_url("ret", "invoice") + "/versions/1", headers=auth(officer))
        content = http.get(
            subject_url("ret", "artefacts", kept_call["id"], "content"), headers=auth(officer)
        )
        restricted = http.post(
            subject_url("ret", "restriction"), json={"reason": "dispute"}, headers=auth(officer)
        )
        status = _status(http, keys, erasure["id"])
    for refused in (deleted_artefact, deleted_record):
        assert refused.status_code == 409, refused.text
        assert problem(refused)["type"].endswith("/restricted")
    assert new_life.status_code in (200, 201), new_life.text
    assert [v["version"] for v in versions.json()["items"]] == [1]
    assert old.status_code == 200 and old.json() == {"eur": 42}
    assert content.status_code == 200 and content.content == b"billing call"
    assert restricted.status_code == 200, restricted.text
    assert status == "held"
    assert deletion_violations(vault) == []


def test_an_upload_an_erasure_overtook_does_not_answer_created(quiet_vault: ServerThread) -> None:
    """The upload began before the erasure was requested (its generation is covered), and
    the erasure shredded it while its body streamed: the upload must not answer 201."""
    vault = quiet_vault
    with vault.client() as http:
        keys = _keys(http, vault)
        release = threading.Event()

        def body() -> Iterator[bytes]:
            yield b"first half "
            assert release.wait(30)
            yield b"second half"

        answer: dict[str, httpx.Response] = {}

        def send() -> None:
            with vault.client() as own:
                answer["upload"] = upload(own, keys["app"], "overtaken", body(), "recording")

        uploader = threading.Thread(target=send)
        uploader.start()
        assert _wait_for_uploading(vault)
        erasure = http.post(subject_url("overtaken", "erasure"), headers=auth(keys["privacy"]))
        run_worker_pass(vault)
        release.set()
        uploader.join(30)
        listed = http.get(subject_url("overtaken", "artefacts"), headers=auth(keys["officer"]))
    assert erasure.status_code == 202
    assert answer["upload"].status_code == 410, answer["upload"].text
    assert listed.json()["items"] == []


def _wait_for_uploading(vault: ServerThread) -> bool:
    async def uploading() -> int:
        rows = await _rows(
            vault.database_url, "SELECT count(*) AS n FROM artefacts WHERE state = 'uploading'"
        )
        return int(rows[0]["n"])

    deadline = time.monotonic() + 20
    while asyncio.run(uploading()) == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def _rows(url: str, query: str) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()
