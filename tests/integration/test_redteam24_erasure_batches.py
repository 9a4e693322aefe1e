"""Red team 24: the erasure executor's batch, shredded in subject id order since this stop
(vault/services/keyring.py `destroy_many_subject_keys` maps each outcome back to its ask).

Held: a batch whose erasures are due in the reverse of their subjects' id order, one of
them covering two generations, beside a hold, statutory retention and an unknown
reference: every item, the API's view, each receipt and the deletion check name each
erasure's own subject's keys of the generations it covers, and nothing else.

Found: a lock cycle between the executor and a repeated erasure request. The executor
claims its erasures (row locks, `claim_due` FOR UPDATE) and then locks their subjects
(`dv_destroy_subject_keys`); a repeated request for a subject whose erasure is
scheduled locks the subject first, then the subject's running erasures
(`dv_erasure_request`). PostgreSQL aborts the batch, which is redone one erasure at a
time. The subject-order fix of this stop does not reach it: it is the erasure row
against the subject row, whatever the subjects' order.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import workers.erasure as executor
from tests.api.helpers import auth, create_key, put_record, upload
from tests.jobs import deletion_violations, run_worker_pass
from tests.support import (
    ServerThread,
    SlowedQuery,
    fetchval,
    make_tenant,
    paused_in_database,
    private_server,
)
from vault.runtime import operator_context
from workers.erasure import run_due_erasures


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    # No background jobs: the executor runs here by hand.
    with private_server(pg_admin_url, tmp_path_factory.mktemp("rt24-batches") / "data") as server:
        yield server


def _deadlocks(url: str) -> int:
    return int(
        fetchval(url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    )


def _subject_of(url: str, tenant_id: uuid.UUID, record: str) -> uuid.UUID:
    """The subject holding the record named `record` (each test subject has its own)."""
    found = fetchval(
        url,
        "SELECT subject_id FROM records WHERE tenant_id = $1 AND name = $2 LIMIT 1",
        tenant_id,
        record,
    )
    return uuid.UUID(str(found))


def _items(url: str, erasure_id: str) -> list[dict[str, Any]]:
    """The erasure's items, each with the subject and generation of its key."""
    rows = fetchval(
        url,
        "SELECT coalesce(json_agg(json_build_object('key_id', i.key_id, 'category',"
        " i.category, 'outcome', i.outcome, 'subject_id', k.subject_id, 'generation',"
        " k.generation) ORDER BY i.key_id), '[]') FROM erasure_items i"
        " JOIN subject_keys k ON k.tenant_id = i.tenant_id AND k.id = i.key_id"
        " WHERE i.erasure_id = $1",
        uuid.UUID(erasure_id),
    )

    return list(json.loads(rows))


def _live_keys(url: str, subject_id: uuid.UUID) -> list[tuple[str, int]]:
    rows = fetchval(
        url,
        "SELECT coalesce(json_agg(json_build_array(category, generation)), '[]')"
        " FROM subject_keys WHERE subject_id = $1 AND wrapped_key IS NOT NULL",
        subject_id,
    )

    return sorted((c, g) for c, g in json.loads(rows))


def test_held_a_batch_in_reverse_subject_order_gives_each_erasure_its_own_keys(
    vault: ServerThread,
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    tag = uuid.uuid4().hex[:6]
    kinds = ("plain", "kept", "held", "twice")
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        officer = create_key(http, tenant, ["compliance"])
        refs = {kind: f"rt24-{kind}-{tag}" for kind in kinds}
        for kind, ref in refs.items():
            assert put_record(http, app, ref, f"id-{kind}-{tag}", b'{"v": 1}').is_success
            assert upload(http, app, ref, b"ticket", "support").is_success
        assert put_record(http, app, refs["kept"], "invoice", b'{"eur": 1}', "billing").is_success
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": refs["held"], "categories": ["support"],
                  "reason": "litigation", "reference": "L-24"},
            headers=auth(officer),
        )  # fmt: skip
        assert hold.status_code == 201, hold.text
        subjects = {
            kind: _subject_of(vault.database_url, tenant.id, f"id-{kind}-{tag}") for kind in kinds
        }
        # Due in the reverse of the subjects' id order: the batch's asks are reordered.
        order = sorted(kinds, key=lambda kind: subjects[kind], reverse=True)
        erasures: dict[str, str] = {}
        for kind in order:
            answer = http.post(f"/v1/subjects/{refs[kind]}/erasure", headers=auth(privacy))
            assert answer.status_code == 202, answer.text
            erasures[kind] = answer.json()["id"]
        answer = http.post(f"/v1/subjects/rt24-nobody-{tag}/erasure", headers=auth(privacy))
        erasures["nobody"] = answer.json()["id"]
        # Written after its erasure was requested (its next generation), then asked
        # again: the same erasure now covers both generations (two asks in the batch).
        assert upload(http, app, refs["twice"], b"later", "support").is_success
        again = http.post(f"/v1/subjects/{refs['twice']}/erasure", headers=auth(privacy))
        assert again.json()["id"] == erasures["twice"]
        live_before = {kind: _live_keys(vault.database_url, subjects[kind]) for kind in kinds}
        assert len({g for _, g in live_before["twice"]}) == 2, live_before["twice"]
        run_worker_pass(vault)
        shown = {
            kind: http.get(f"/v1/erasures/{e}", headers=auth(privacy)).json()
            for kind, e in erasures.items()
        }
        receipts = {
            kind: http.get(f"/v1/erasures/{e}/receipt", headers=auth(privacy))
            for kind, e in erasures.items()
        }
    assert {kind: e["status"] for kind, e in shown.items()} == {
        "plain": "completed", "kept": "held", "held": "held", "twice": "completed",
        "nobody": "completed",
    }  # fmt: skip
    assert _items(vault.database_url, erasures["nobody"]) == []
    for kind in kinds:
        items = _items(vault.database_url, erasures[kind])
        # Every item is a key of this erasure's own subject, and every key it covered
        # is an item: the shredded ones are gone, the kept ones are what stayed live.
        assert {i["subject_id"] for i in items} == {str(subjects[kind])}, (kind, items)
        assert sorted((i["category"], i["generation"]) for i in items) == live_before[kind]
        kept = sorted((i["category"], i["generation"]) for i in items if i["outcome"] != "shredded")
        assert _live_keys(vault.database_url, subjects[kind]) == kept, kind
        shredded = {i["key_id"] for i in items if i["outcome"] == "shredded"}
        assert {s["key_id"] for s in shown[kind]["shredded"]} == shredded, kind
        receipt = receipts[kind].json()
        assert receipts[kind].status_code == 200, receipt
        assert {s["key_id"] for s in receipt["receipt"]["shredded"]} == shredded, kind
    assert [h["category"] for h in shown["held"]["held"]] == ["support"]
    assert [r["category"] for r in shown["kept"]["retained"]] == ["billing"]
    assert shown["kept"]["held"] == [] and shown["held"]["retained"] == []
    assert deletion_violations(vault) == []


@pytest.mark.xfail(
    strict=True,
    reason="red team 24: the executor locks an erasure then its subject, a repeated"
    " erasure request the subject then its erasure: PostgreSQL aborts the batch",
)
def test_a_repeated_erasure_request_during_the_executors_batch_makes_no_lock_cycle(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: a subject's erasure is due; while the executor's batch has claimed it and
    not yet reached the subject, the same erasure is requested again (a client retrying
    its request, or asking once more for data written since).

    The window is widened on purpose: the batch's `shred_inputs` statement sleeps 2 s
    after the claim. Observed: the request answers 200 after PostgreSQL's deadlock
    timeout (1 s), pg_stat_database counts one deadlock, and the batch is aborted and
    redone one erasure at a time (a batch of 25 loses its work for one repeated request).
    Expected: no lock cycle (the request waits for the batch, or the batch for it)."""
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = f"rt24-again-{uuid.uuid4().hex[:6]}"
    with vault.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        privacy = create_key(http, tenant, ["erasure"])
        assert put_record(http, app, ref, "r", b'{"x": 1}').status_code == 201
        first = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy))
        assert first.status_code == 202, first.text
    slow = SlowedQuery(
        executor.Q,
        "shred_inputs",
        lambda q: f"SELECT q.* FROM (\n{q}\n) q, (SELECT pg_sleep(2)) p",
    )
    monkeypatch.setattr(executor, "Q", slow)
    monkeypatch.setattr(executor, "_PARALLEL", 1)
    deadlocks_before = _deadlocks(vault.database_url)
    outcome: dict[str, Any] = {}

    def shred() -> None:
        async def run() -> None:
            async with operator_context(vault.settings, vault.database_url) as ctx:
                outcome["shredded"] = await run_due_erasures(ctx.db, ctx.keyring)

        asyncio.run(run())

    slow.armed.set()
    batch = threading.Thread(target=shred)
    batch.start()
    assert paused_in_database(vault.database_url), "the batch never reached its inputs"
    with vault.client() as http:
        again: httpx.Response = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy))
    batch.join(30)
    assert again.status_code in (200, 202), again.text
    assert outcome.get("shredded") == 1, outcome
    assert _deadlocks(vault.database_url) == deadlocks_before
