"""Red team 8: an answer's hold on its keys races the erasure that shreds them.

DESIGN.md, Deletion guarantees: "completed" means no process holds the key any more.
Every answer carrying data decrypted with a subject's key holds its keys in
transfer_keys in one statement (dv_transfer_hold_keys, migration 0038), which returns the
keys' rows "read in the same snapshot: the vault unwraps only what this returns, so a key
shredded before the hold is not decrypted, and one shredded after it is held off until
the answer has left". The erasure's completion (erasures.sql `awaiting_ledger`) waits
only for *committed* rows of transfer_keys.

Under READ COMMITTED that is two different moments: the statement reads the keys live in
its snapshot, and its row in transfer_keys becomes visible at its commit. Nothing orders
the two against the shred (the hold takes no lock on the key rows: the shred's UPDATE of
`wrapped_key` neither waits for it nor makes it look again), so an erasure whose shred
commits after the hold's snapshot and whose completion runs before the hold's commit
completes without seeing the hold; then the hold commits, returns the key rows as they
were in its snapshot, and the vault decrypts and answers after `completed`.

The window (a statement's snapshot to its commit) is widened on purpose: the vault's
`hold_keys` statement spends a pause after the function has returned its rows and before
the statement ends (a slow or descheduled connection at that moment). The vault runs in
this process (quiet_vault), so the statement it sends is patched here.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    put_record,
    record_url,
    rfc3339,
    subject_url,
    uploaded,
    wait_for,
)
from tests.jobs import run_worker_pass
from tests.support import (
    ServerThread,
    SlowedQuery,
    Tenant,
    make_tenant,
    paused_in_database,
    transfer_holds,
)
from vault.services import artefacts as artefact_service
from vault.services import records as record_service
from vault.services import transfers as transfer_service

PAUSE_SECONDS = 4.0


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


def _paused_before_commit(query: str) -> str:
    """The statement spends PAUSE_SECONDS after its function has returned, before it (and
    so its implicit transaction) ends: the hold's snapshot is taken, its commit is late."""
    return (
        f"WITH h AS MATERIALIZED (\n{query}\n),"
        f" pause AS (SELECT pg_sleep({PAUSE_SECONDS}) FROM (SELECT count(*) FROM h) c)"
        " SELECT h.* FROM h, pause"
    )


@dataclass(frozen=True)
class Answer:
    """An answer that decrypts with the subject's keys: the module whose statement holds
    them, that statement's name, and the request (method, path, which key) given the
    artefact's id."""

    module: Any
    statement: str
    method: str
    path: Callable[[str, str], str]
    key: str  # "app" or "officer"


ANSWERS = {
    "listArtefacts": Answer(
        transfer_service, "hold_keys", "GET", lambda ref, _: subject_url(ref, "artefacts"), "app"
    ),
    "getArtefact": Answer(
        artefact_service, "read_held", "GET", lambda ref, item: artefact_url(ref, item), "app"
    ),
    "headContent": Answer(
        artefact_service,
        "read_held",
        "HEAD",
        lambda ref, item: artefact_url(ref, item, "content"),
        "app",
    ),
    "playbackHead": Answer(
        artefact_service,
        "read_held",
        "HEAD",
        lambda ref, item: artefact_url(ref, item, "links"),
        "app",
    ),  # the path mints the link; the link's URL is read
    # The single-key hold the answers above share with content and record reads
    # (dv_transfer_hold, migration 0026, called by the read statements of migrations 0032
    # and 0037): the same gap, before answer-holds.
    "getContent": Answer(
        artefact_service,
        "read_held",
        "GET",
        lambda ref, item: artefact_url(ref, item, "content"),
        "app",
    ),
    "getRecord": Answer(
        record_service, "read_held", "GET", lambda ref, _: record_url(ref, "profile"), "app"
    ),
    "listDisclosures": Answer(
        transfer_service, "hold_keys", "GET", lambda _, __: "/v1/disclosures", "officer"
    ),
}


def _erase_and_complete(
    vault: ServerThread, http: httpx.Client, privacy: dict[str, Any], ref: str
) -> str:
    erasure = http.post(subject_url(ref, "erasure"), headers=auth(privacy))
    assert erasure.status_code == 202, erasure.text
    url = f"/v1/erasures/{erasure.json()['id']}"
    deadline = time.monotonic() + PAUSE_SECONDS - 1
    while time.monotonic() < deadline:
        run_worker_pass(vault)
        status = str(http.get(url, headers=auth(privacy)).json()["status"])
        if status == "completed":
            return status
        time.sleep(0.1)
    return str(http.get(url, headers=auth(privacy)).json()["status"])


@pytest.mark.parametrize("answer", ANSWERS, ids=list(ANSWERS))
def test_an_answer_whose_hold_commits_late_does_not_deliver_after_completion(
    quiet_vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """Attack: an answer that decrypts a subject's data (a listing of its artefacts, an
    artefact's metadata, a HEAD of its content with the filename in Content-Disposition,
    directly or through a playback link, a listing of disclosures) holds the keys in one
    statement. That statement has taken its snapshot (the keys live) when the subject's
    erasure shreds them and the publisher completes the erasure; it commits after that
    (PAUSE_SECONDS, widened on purpose: a connection descheduled or slow between the
    statement's snapshot and its commit).

    Observed: the erasure is `completed` (its receipt issued) while the answer is still
    in the vault; the answer then arrives, 200, with the decrypted filename or
    description.
    Expected: either the completion waits for the hold (the hold locks the key rows it
    reads, e.g. FOR SHARE, so the shred's UPDATE waits for the hold's commit and a shred
    committed first is seen by the hold's re-check), or the hold finds the key shredded
    and nothing is decrypted."""
    shape = ANSWERS[answer]
    slow = SlowedQuery(shape.module.Q, shape.statement, _paused_before_commit)
    monkeypatch.setattr(shape.module, "Q", slow)
    ref = f"raced-{uuid.uuid4().hex[:8]}"
    marker = f"secret-{uuid.uuid4().hex}"
    with quiet_vault.client() as http:
        keys = {
            "app": create_key(http, tenant, ["ingest", "read"]),
            "officer": create_key(http, tenant, ["compliance"]),
        }
        privacy = create_key(http, tenant, ["erasure"])
        item = uploaded(http, keys["app"], ref, marker.encode(), filename=f"{marker}.txt")["id"]
        value = f'{{"secret": "{marker}"}}'.encode()
        assert put_record(http, keys["app"], ref, "profile", value).status_code == 201
        if shape.key == "officer":
            recorded = http.post(
                "/v1/disclosures",
                json={
                    "subject_ref": ref, "recipient": "Politie Eenheid Amsterdam",
                    "legal_basis": "Art. 126nd Sv (vordering)", "reference": "PV-1",
                    "categories": ["account"], "disclosed_at": rfc3339(datetime.now(UTC)),
                    "description": marker,
                },
                headers=auth(keys["officer"]),
            )  # fmt: skip
            assert recorded.status_code == 201, recorded.text
        path = shape.path(ref, item)
        if path.endswith("/links"):  # a playback link's HEAD: no Authorization needed
            minted = http.post(path, headers=auth(keys["app"]))
            assert minted.status_code == 201, minted.text
            path = urllib.parse.urlsplit(minted.json()["url"]).path
        # The upload's own hold (released off the request path) must not be what delays
        # the completion: only the racing answer's hold may.
        assert wait_for(lambda: not transfer_holds(quiet_vault.database_url, tenant), timeout=5)
        answers: dict[str, httpx.Response] = {}
        finished_at: dict[str, float] = {}

        def read() -> None:
            with quiet_vault.client() as other:
                answers["read"] = other.request(shape.method, path, headers=auth(keys[shape.key]))
            finished_at["read"] = time.monotonic()

        slow.armed.set()
        reader = threading.Thread(target=read)
        reader.start()
        assert slow.entered.wait(10), "the answer never reached its hold"
        # The hold's statement at its pause: its snapshot is taken, its commit is late.
        assert paused_in_database(quiet_vault.database_url), "the hold never reached its pause"
        status = _erase_and_complete(quiet_vault, http, privacy, ref)
        completed_at = time.monotonic()
        reader.join(30)
    got = answers["read"]
    delivered = marker in got.text or marker in str(got.headers)
    assert status != "completed" or finished_at["read"] < completed_at or not delivered, (
        f"the erasure completed while the {answer} answer was in the vault; it then "
        f"answered {got.status_code} with the decrypted data"
    )
