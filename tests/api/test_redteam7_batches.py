"""Red team 7: attacks on the batched erasure path (issue 19, fourth round: a subject's
keys of a generation destroyed in one statement, a batch's retention inputs read in one
statement before any destroy, its items, ledger rows and status changes written one
round trip each, the publisher completing a batch with its receipts at once).

The window inside a batch is widened on purpose: the executor runs in this process with
one batch at a time and a pause injected before one instruction's destroy, so what lands
in which batch, and what happens between two instructions of one batch, is fixed rather
than hoped for."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import auth, create_key, put_record
from tests.jobs import OneAskAtATime, deletion_violations, run_worker_pass
from tests.support import ServerThread, Tenant, fetchval, make_tenant
from vault.runtime import operator_context
from workers import erasure as executor


@pytest.fixture
def tenant(quiet_vault: ServerThread) -> Tenant:
    return make_tenant(quiet_vault.settings, quiet_vault.database_url)


@pytest.fixture
def one_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(executor, "_PARALLEL", 1)
    yield


def _keys(http: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    return {
        "app": create_key(http, tenant, ["ingest", "read"]),
        "privacy": create_key(http, tenant, ["erasure"]),
        "officer": create_key(http, tenant, ["compliance"]),
    }


def _erase(http: httpx.Client, keys: dict[str, Any], ref: str) -> str:
    answer = http.post(f"/v1/subjects/{ref}/erasure", headers=auth(keys["privacy"]))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _paused_pass(
    vault: ServerThread, tenant: Tenant, at_call: int, during: Callable[[], None],
    now: datetime | None = None,
) -> None:  # fmt: skip
    """One executor pass in this process whose `at_call`-th subject-key destroy of this
    tenant (one call per instruction and generation) first runs `during` in another
    thread and waits for it (at most 5 s: something it waits for may be this batch)."""
    calls = 0

    class PausedKeyRing(OneAskAtATime):
        async def destroy_subject_keys(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            if args[1] == tenant.id:
                calls += 1
                if calls == at_call:
                    done = threading.Event()

                    def run() -> None:
                        try:
                            during()
                        finally:
                            done.set()

                    threading.Thread(target=run, daemon=True).start()
                    await asyncio.to_thread(done.wait, 5.0)
            return await self._real.destroy_subject_keys(*args, **kwargs)

    async def run() -> None:
        async with operator_context(vault.settings, vault.database_url) as ctx:
            keyring: Any = PausedKeyRing(ctx.keyring)
            await executor.run_due_erasures(ctx.db, keyring, now)

    asyncio.run(run())
    assert calls >= at_call, "the pause never came"


async def _owner_fetch(url: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def test_a_subject_hold_placed_mid_batch_keeps_a_later_instruction(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Attack: two subjects erased in one batch; between the first one's destroy and the
    second one's, the compliance officer places a hold over the second subject's
    billing. Whatever the order, the hold answered 201 before the second destroy means
    the second subject's billing key must be kept (held), never shredded."""
    placed: list[httpx.Response] = []
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        for ref in ("alpha", "beta"):
            assert put_record(http, keys["app"], ref, "inv", b'{"v": 1}', "support").is_success
        ids = {ref: _erase(http, keys, ref) for ref in ("alpha", "beta")}

        def place() -> None:
            with quiet_vault.client() as other:
                placed.append(
                    other.post(
                        "/v1/holds",
                        json={"subject_ref": "beta", "categories": ["support"],
                              "reason": "litigation", "reference": "L-7"},
                        headers=auth(keys["officer"]),
                    )
                )  # fmt: skip

        _paused_pass(quiet_vault, tenant, 2, place)
        run_worker_pass(quiet_vault)
        shown = http.get(f"/v1/erasures/{ids['beta']}", headers=auth(keys["privacy"])).json()
    assert placed and placed[0].status_code == 201, placed
    assert shown["status"] == "held", shown
    assert [h["category"] for h in shown["held"]] == ["support"]
    assert deletion_violations(quiet_vault) == []


# The advisory lock the staged statement waits on at its second ask (below).
_PAUSE_LOCK = 0x7E57_0701


class _PausedDestroyQueries:
    """keys.sql as the vault reads it, except that the batch's destroy statement
    (`destroy_many_subject_keys`), for one tenant, waits on _PAUSE_LOCK just before its
    second ask's call, inside the statement: the real statement's text, one step added."""

    def __init__(self, real: Any, tenant_id: uuid.UUID) -> None:
        self._real, self._tenant_id = real, tenant_id

    def __getattr__(self, name: str) -> str:
        text = str(getattr(self._real, name))
        if name != "destroy_many_subject_keys":
            return text
        call = " CROSS JOIN LATERAL dv_destroy_subject_keys("
        assert call in text and "x.erasure_id) AS d" in text, "the statement changed"
        pause = (
            " CROSS JOIN LATERAL (SELECT CASE WHEN x.n = 2 AND $1 = "
            f"'{self._tenant_id}'::uuid THEN (SELECT x.erasure_id FROM "
            f"pg_advisory_xact_lock({_PAUSE_LOCK})) ELSE x.erasure_id END AS erasure_id) AS p"
        )
        return text.replace(call, pause + call).replace("x.erasure_id) AS d", "p.erasure_id) AS d")


def test_a_subject_hold_placed_inside_the_batch_statement_keeps_a_later_instruction(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Attack on the batch's one destroy statement itself (issue 19, fifth round; the
    other attacks here pause between asks sent one at a time: tests/jobs.py
    OneAskAtATime): two subjects erased in one batch, and while the statement waits
    between its first ask and its second, the compliance officer places a hold over the
    second subject's support data (second in id order, the statement's). The hold answers
    201 before the second ask runs, so that ask must see it (each query of
    dv_destroy_subject_keys reads afresh) and keep the key: the erasure is held, nothing
    is shredded that the hold covers."""
    from vault.services import keyring as keyring_module

    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        for ref in ("eins", "zwei"):
            assert put_record(http, keys["app"], ref, "inv", b'{"v": 1}', "support").is_success
        ids = {ref: _erase(http, keys, ref) for ref in ("eins", "zwei")}
    # The statement takes its asks in subject id order (KeyRing.destroy_many_subject_keys):
    # the hold goes on the subject whose ask comes second.
    first, second = sorted(
        ids,
        key=lambda ref: str(
            fetchval(
                quiet_vault.database_url,
                "SELECT subject_id FROM erasures WHERE id = $1",
                uuid.UUID(ids[ref]),
            )
        ),
    )
    monkeypatch.setattr(keyring_module, "Q", _PausedDestroyQueries(keyring_module.Q, tenant.id))

    def place() -> httpx.Response:
        with quiet_vault.client() as other:
            return other.post(
                "/v1/holds",
                json={"subject_ref": second, "categories": ["support"],
                      "reason": "litigation", "reference": "L-8"},
                headers=auth(keys["officer"]),
            )  # fmt: skip

    async def waiting(watcher: asyncpg.Connection) -> bool:
        return bool(
            await watcher.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                " AND NOT granted AND classid = 0 AND objid = $1::bigint::oid)",
                _PAUSE_LOCK,
            )
        )

    async def run() -> httpx.Response:
        blocker = await asyncpg.connect(quiet_vault.database_url)
        try:
            await blocker.execute("SELECT pg_advisory_lock($1)", _PAUSE_LOCK)
            async with operator_context(quiet_vault.settings, quiet_vault.database_url) as ctx:
                batch = asyncio.create_task(executor.run_due_erasures(ctx.db, ctx.keyring))
                for _ in range(600):
                    if batch.done() or await waiting(blocker):
                        break
                    await asyncio.sleep(0.05)
                assert not batch.done(), "the statement never reached its second ask"
                placed = await asyncio.to_thread(place)
                assert not batch.done()  # still waiting: the hold answered first
                await blocker.execute("SELECT pg_advisory_unlock($1)", _PAUSE_LOCK)
                await batch
                return placed
        finally:
            await blocker.close()

    placed = asyncio.run(run())
    assert placed.status_code == 201, placed.text
    with quiet_vault.client() as http:
        run_worker_pass(quiet_vault)
        shown = {
            ref: http.get(f"/v1/erasures/{i}", headers=auth(keys["privacy"])).json()
            for ref, i in ids.items()
        }
    assert shown[first]["status"] == "completed", shown[first]
    assert shown[second]["status"] == "held", shown[second]
    assert [h["category"] for h in shown[second]["held"]] == ["support"]
    assert deletion_violations(quiet_vault) == []


def test_a_tenant_wide_hold_placed_mid_batch_never_answers_before_a_destroy_it_covers(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Attack: a tenant-wide hold (no subject) placed between two instructions of one
    batch. Either it waits for the batch (the batch shredded first: fine), or it answers
    first and then the second instruction must keep what it covers."""
    placed: list[httpx.Response] = []
    answered_mid_batch: list[bool] = []
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        for ref in ("gamma", "delta"):
            assert put_record(http, keys["app"], ref, "inv", b'{"v": 1}', "support").is_success
        ids = {ref: _erase(http, keys, ref) for ref in ("gamma", "delta")}

        def place() -> None:
            with quiet_vault.client() as other:
                placed.append(
                    other.post(
                        "/v1/holds",
                        json={"categories": ["support"], "reason": "regulatory",
                              "reference": "R-7"},
                        headers=auth(keys["officer"]),
                    )
                )  # fmt: skip

        thread_box: list[threading.Thread] = []

        def start() -> None:
            worker = threading.Thread(target=place, daemon=True)
            worker.start()
            thread_box.append(worker)
            worker.join(3.0)
            # Answered before the batch went on (not merely before this test looked).
            answered_mid_batch.append(not worker.is_alive())

        _paused_pass(quiet_vault, tenant, 2, start)
        (mid,) = answered_mid_batch
        thread_box[0].join(30)
        shown = http.get(f"/v1/erasures/{ids['delta']}", headers=auth(keys["privacy"])).json()
    assert placed and placed[0].status_code == 201, placed
    if mid:
        assert shown["status"] in ("held", "in_progress"), shown
        assert [h["category"] for h in shown["held"]] == ["support"], shown
    else:
        assert [s["category"] for s in shown["shredded"]].count("support") == 1, shown
    assert deletion_violations(quiet_vault) == []


def test_a_mixed_batchs_receipts_state_exactly_what_the_ledger_holds(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Attack: one batch of a plain erasure, a cancelled-then-renewed subject (its new
    erasure covers two generations), one under statutory retention and an unknown ref;
    each completed or held erasure's stored receipt names exactly the subject keys the
    ledger outbox says that erasure destroyed, and no key it names is live."""
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        set_grace = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 1}, headers=tenant.auth()
        )
        assert set_grace.status_code == 200, set_grace.text
        assert put_record(http, keys["app"], "twice", "a", b'{"v": 1}', "support").is_success
        first = _erase(http, keys, "twice")
        cancelled = http.post(f"/v1/erasures/{first}/cancel", headers=auth(keys["privacy"]))
        assert cancelled.status_code == 200, cancelled.text
        assert put_record(http, keys["app"], "twice", "b", b'{"v": 2}', "support").is_success
        assert put_record(http, keys["app"], "plain", "a", b'{"v": 1}', "support").is_success
        assert put_record(http, keys["app"], "kept", "inv", b'{"v": 1}', "billing").is_success
        assert put_record(http, keys["app"], "kept", "t", b'{"v": 1}', "support").is_success
        ids = {ref: _erase(http, keys, ref) for ref in ("twice", "plain", "kept", "nobody")}
        run_worker_pass(quiet_vault, days=1)
        run_worker_pass(quiet_vault, days=1)
        shown = {
            ref: http.get(f"/v1/erasures/{e}", headers=auth(keys["privacy"])).json()
            for ref, e in ids.items()
        }
    assert {ref: s["status"] for ref, s in shown.items()} == {
        "twice": "completed", "plain": "completed", "kept": "held", "nobody": "completed",
    }  # fmt: skip
    outbox = asyncio.run(
        _owner_fetch(
            quiet_vault.database_url,
            "SELECT o.erasure_id, o.key_id, o.key_kind, o.ledger_seq FROM ledger_outbox o"
            " WHERE o.tenant_id = $1 AND o.erasure_id IS NOT NULL",
            tenant.id,
        )
    )
    receipts = asyncio.run(
        _owner_fetch(
            quiet_vault.database_url,
            "SELECT erasure_id, final, document FROM erasure_receipts WHERE tenant_id = $1",
            tenant.id,
        )
    )
    by_erasure: dict[str, set[str]] = {}
    last_seq: dict[str, int] = {}
    for row in outbox:
        assert row["ledger_seq"] is not None, row  # every row of a finished erasure published
        last_seq[str(row["erasure_id"])] = max(
            last_seq.get(str(row["erasure_id"]), 0), int(row["ledger_seq"])
        )
        if row["key_kind"] != "subject":
            continue
        by_erasure.setdefault(str(row["erasure_id"]), set()).add(str(row["key_id"]))
    assert {str(r["erasure_id"]) for r in receipts} >= {ids["twice"], ids["plain"]}
    for row in receipts:
        document = json.loads(row["document"])
        receipt = document["receipt"]
        erasure_id = str(row["erasure_id"])
        stated = {s["key_id"] for s in receipt["shredded"]}
        # What the receipt says this erasure destroyed is what the ledger says it did.
        assert stated == by_erasure.get(erasure_id, set()), (erasure_id, receipt)
        # The head it states reaches every ledger entry of the erasure.
        assert receipt["ledger"]["seq"] >= last_seq.get(erasure_id, 0), receipt
        live = asyncio.run(
            _owner_fetch(
                quiet_vault.database_url,
                "SELECT count(*) AS n FROM subject_keys WHERE id = ANY($1::uuid[])"
                " AND wrapped_key IS NOT NULL",
                [uuid.UUID(k) for k in stated],
            )
        )
        assert live[0]["n"] == 0, receipt
    # "twice" covers both generations: the cancelled erasure's and the new one's.
    assert len(shown["twice"]["shredded"]) == 3, shown["twice"]  # identity, support x2
    assert deletion_violations(quiet_vault) == []
    assert deletion_violations(quiet_vault, days=1) == []


class _SlowLockQueries:
    """erasures.sql as the vault reads it, except that `get_for_update` (the cancel's
    lock on the erasure) first spends 1.5 s in the statement: a slow connection between
    the cancel's BEGIN (its now()) and its lock, widened on purpose."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> str:
        if name == "get_for_update":
            return (
                "SELECT e.* FROM pg_sleep(1.5) AS pause, erasures e"
                " WHERE e.tenant_id = $1 AND e.id = $2 FOR UPDATE OF e"
            )
        return str(getattr(self._real, name))


def test_a_cancellation_racing_a_repeated_request_is_the_newest_ledger_record(
    quiet_vault: ServerThread, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: an erasure request now writes its shred-ledger entry in the request's own
    transaction (issue 19, fourth round). A restore replays, of one erasure's
    `erasure_request` entries, the newest by `destroyed_at` (ledger_controls.newest_facts),
    which the outbox sets to now(): the time the writing transaction began, not when it
    took the erasure's lock.

    Steps: a tenant with a 1 h grace period; subject `racy` is erased (scheduled). The
    privacy officer cancels it; the cancel's transaction begins, and before it locks the
    erasure (a slow connection: 1.5 s, injected), the tenant's system repeats the erasure
    request. The request locks the erasure, answers with it (scheduled) and records it;
    then the cancellation locks it, cancels it and records that.

    Observed: the database says cancelled, but the request's entry (scheduled) carries
    the later `destroyed_at`, so a restore from any backup taken before would bring the
    erasure back scheduled and shred the subject the controller chose to keep.
    Expected: the newest entry is the cancellation (stamped at or after the lock, e.g.
    clock_timestamp(), or ordered by the outbox's sequence)."""
    from vault.services import erasures as erasure_service
    from vault.services.ledger_controls import newest_facts

    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        grace = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 1}, headers=tenant.auth()
        )
        assert grace.status_code == 200, grace.text
        assert put_record(http, keys["app"], "racy", "a", b'{"v": 1}', "support").is_success
        erasure_id = _erase(http, keys, "racy")
    monkeypatch.setattr(erasure_service, "Q", _SlowLockQueries(erasure_service.Q))
    answers: dict[str, httpx.Response] = {}

    def cancel() -> None:
        with quiet_vault.client() as other:
            answers["cancel"] = other.post(
                f"/v1/erasures/{erasure_id}/cancel", headers=auth(keys["privacy"])
            )

    def repeat() -> None:
        with quiet_vault.client() as other:
            answers["repeat"] = other.post(
                "/v1/subjects/racy/erasure", headers=auth(keys["privacy"])
            )

    cancelling = threading.Thread(target=cancel, daemon=True)
    cancelling.start()
    threading.Event().wait(0.5)  # the cancel's transaction has begun and sleeps
    repeat()
    cancelling.join(30)
    if set(answers) != {"cancel", "repeat"} or not answers["repeat"].is_success:
        raise RuntimeError(f"the race was not staged: {answers}")
    if answers["repeat"].json()["id"] != erasure_id:
        raise RuntimeError("the repeated request did not answer with the scheduled erasure")
    assert answers["cancel"].status_code == 200, answers["cancel"].text
    rows = asyncio.run(
        _owner_fetch(
            quiet_vault.database_url,
            "SELECT key_kind, destroyed_at, fact FROM ledger_outbox"
            " WHERE tenant_id = $1 AND key_kind = 'erasure_request'",
            tenant.id,
        )
    )
    entries = [
        {"key_kind": r["key_kind"], "destroyed_at": r["destroyed_at"].isoformat(),
         "fact": json.loads(r["fact"])}
        for r in rows
    ]  # fmt: skip
    (newest,) = [f for _, f in newest_facts(entries, "erasure_request", "erasure_id")
                 if f["erasure_id"] == erasure_id]  # fmt: skip
    assert newest["status"] == "cancelled", newest


def test_an_extended_erasures_ledger_record_covers_the_generation_it_was_extended_to(
    quiet_vault: ServerThread, tenant: Tenant
) -> None:
    """Attack: the request's ledger entry is now the row the request's statement returns
    (no second read). A scheduled erasure extended by a repeated request (data written
    since) must be recorded with the generation it was extended to, or a restore would
    shred only the older one; after the shred, the instruction entry names the keys of
    both generations and the newest request entry agrees with the database."""
    from vault.services.ledger_controls import newest_facts

    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        grace = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 1}, headers=tenant.auth()
        )
        assert grace.status_code == 200, grace.text
        assert put_record(http, keys["app"], "grown", "a", b'{"v": 1}', "support").is_success
        erasure_id = _erase(http, keys, "grown")
        assert put_record(http, keys["app"], "grown", "b", b'{"v": 2}', "support").is_success
        again = http.post("/v1/subjects/grown/erasure", headers=auth(keys["privacy"]))
        assert again.is_success and again.json()["id"] == erasure_id, again.text
        rows = asyncio.run(
            _owner_fetch(
                quiet_vault.database_url,
                "SELECT key_kind, destroyed_at, fact FROM ledger_outbox"
                " WHERE tenant_id = $1 AND key_kind = 'erasure_request'",
                tenant.id,
            )
        )
        db_row = asyncio.run(
            _owner_fetch(
                quiet_vault.database_url,
                "SELECT generation, from_generation FROM erasures WHERE id = $1",
                uuid.UUID(erasure_id),
            )
        )[0]
        entries = [
            {"key_kind": r["key_kind"], "destroyed_at": r["destroyed_at"].isoformat(),
             "fact": json.loads(r["fact"])}
            for r in rows
        ]  # fmt: skip
        (newest,) = [
            f for _, f in newest_facts(entries, "erasure_request", "erasure_id")
            if f["erasure_id"] == erasure_id
        ]  # fmt: skip
        assert (newest["from_generation"], newest["generation"]) == (
            db_row["from_generation"], db_row["generation"],
        ), newest  # fmt: skip
        assert newest["generation"] > newest["from_generation"], newest
        run_worker_pass(quiet_vault, days=1)
        run_worker_pass(quiet_vault, days=1)
        shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(keys["privacy"])).json()
    assert shown["status"] == "completed", shown
    assert sorted(s["category"] for s in shown["shredded"]).count("support") == 2, shown
    assert deletion_violations(quiet_vault, days=1) == []


def test_one_failing_instruction_leaves_no_half_done_batch(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Attack: the middle instruction of a batch of three fails after the first one's
    keys were destroyed in the batch's transaction. Nothing of the batch may stand half
    done: the others are shredded one by one (their items, ledger rows and receipts
    whole), the failing one stays scheduled with every key live and no item, no ledger
    row and no receipt, and the next pass finishes it."""
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        for ref in ("one", "two", "three"):
            assert put_record(http, keys["app"], ref, "a", b'{"v": 1}', "support").is_success
        ids = {ref: _erase(http, keys, ref) for ref in ("one", "two", "three")}
        failing = uuid.UUID(ids["two"])

        class FailingKeyRing(OneAskAtATime):
            async def destroy_subject_keys(self, *args: Any, **kwargs: Any) -> Any:
                if kwargs.get("erasure_id") == failing:
                    raise RuntimeError("injected failure")
                return await self._real.destroy_subject_keys(*args, **kwargs)

        async def run() -> None:
            async with operator_context(quiet_vault.settings, quiet_vault.database_url) as ctx:
                keyring: Any = FailingKeyRing(ctx.keyring)
                await executor.run_due_erasures(ctx.db, keyring)

        asyncio.run(run())
        rows = asyncio.run(
            _owner_fetch(
                quiet_vault.database_url,
                "SELECT e.id, e.status,"
                " (SELECT count(*) FROM erasure_items i WHERE i.erasure_id = e.id) AS items,"
                " (SELECT count(*) FROM ledger_outbox o WHERE o.erasure_id = e.id) AS ledger,"
                " (SELECT count(*) FROM subject_keys k WHERE k.subject_id = e.subject_id"
                "   AND k.wrapped_key IS NOT NULL) AS live"
                " FROM erasures e WHERE e.tenant_id = $1",
                tenant.id,
            )
        )
        state = {str(r["id"]): (r["status"], r["items"], r["ledger"], r["live"]) for r in rows}
        assert state[ids["two"]] == ("scheduled", 0, 0, 2), state
        for ref in ("one", "three"):
            status, items, ledger, live = state[ids[ref]]
            assert (status, items, live) == ("in_progress", 2, 0), state
            assert ledger == 3, state  # two keys and the erasure's instruction entry
        run_worker_pass(quiet_vault)
        shown = {
            ref: http.get(f"/v1/erasures/{e}", headers=auth(keys["privacy"])).json()["status"]
            for ref, e in ids.items()
        }
    assert shown == {"one": "completed", "two": "completed", "three": "completed"}
    assert deletion_violations(quiet_vault) == []


def test_a_batchs_webhook_events_each_carry_their_own_erasures_outcome(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Attack: the publisher completes a batch with one status change per status and the
    webhook events emitted in that statement's loop. A held and a completed erasure
    completed by one publisher transaction: each event names its own erasure, its own
    status and its own categories, one event each."""
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        # The endpoint as the owner writes it (its URL is never called: jobs are off, and
        # this vault allows public receivers only).
        asyncio.run(
            _owner_fetch(
                quiet_vault.database_url,
                "INSERT INTO webhook_endpoints (tenant_id, id, url, events, secret_wrapped,"
                " kek_version, created_by) VALUES ($1, $2, 'https://hooks.invalid/x',"
                " '{erasure.completed,erasure.held}', '\\x00', 1, $3)",
                tenant.id, uuid.uuid4(), uuid.UUID(keys["app"]["id"]),
            )
        )  # fmt: skip
        assert put_record(http, keys["app"], "free", "t", b'{"v": 1}', "support").is_success
        assert put_record(http, keys["app"], "owing", "inv", b'{"v": 1}', "billing").is_success
        ids = {ref: _erase(http, keys, ref) for ref in ("free", "owing")}
        run_worker_pass(quiet_vault)
    rows = asyncio.run(
        _owner_fetch(
            quiet_vault.database_url,
            "SELECT type, body FROM webhook_events WHERE tenant_id = $1",
            tenant.id,
        )
    )
    events = {}
    for row in rows:
        data = json.loads(row["body"])["data"]
        assert data["erasure_id"] not in events, rows  # one event each
        events[data["erasure_id"]] = (row["type"], data["status"], data["shredded"],
                                      [r["category"] for r in data["retained"]])  # fmt: skip
    assert events == {
        ids["free"]: ("erasure.completed", "completed", ["identity", "support"], []),
        ids["owing"]: ("erasure.held", "held", ["identity"], ["billing"]),
    }


def test_a_cancellation_racing_the_batch_that_claimed_it_is_refused(
    quiet_vault: ServerThread, tenant: Tenant, one_batch_at_a_time: None
) -> None:
    """Attack: a worker whose clock runs ahead (or a grace period ending as it runs)
    claims an erasure the API would still let the privacy officer cancel. The cancel
    arrives while the batch is between its claim and its destroy: it must wait for the
    batch and then be refused (409), never answer 200 for an erasure whose keys the batch
    destroyed, and never 500."""
    answers: list[httpx.Response] = []
    with quiet_vault.client() as http:
        keys = _keys(http, tenant)
        grace = http.patch(
            "/v1/tenant/settings", json={"erasure_grace_hours": 1}, headers=tenant.auth()
        )
        assert grace.status_code == 200, grace.text
        assert put_record(http, keys["app"], "late", "a", b'{"v": 1}', "support").is_success
        erasure_id = _erase(http, keys, "late")

        def cancel() -> None:
            with quiet_vault.client() as other:
                answers.append(
                    other.post(f"/v1/erasures/{erasure_id}/cancel", headers=auth(keys["privacy"]))
                )

        _paused_pass(quiet_vault, tenant, 1, cancel, now=datetime.now(UTC) + timedelta(hours=2))
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while not answers and datetime.now(UTC) < deadline:
            threading.Event().wait(0.1)
        run_worker_pass(quiet_vault, days=1)
        shown = http.get(f"/v1/erasures/{erasure_id}", headers=auth(keys["privacy"])).json()
    assert len(answers) == 1 and answers[0].status_code == 409, answers
    assert shown["status"] == "completed", shown
    assert deletion_violations(quiet_vault, days=1) == []
