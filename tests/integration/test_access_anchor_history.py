"""The access-log anchors form a history in the blob store (DESIGN.md "Access log"): one
new object a round, each linked to the one before, never overwritten; `datavault audit
verify` checks that the history holds together, that the chain holds every anchored
head, and that the newest anchor is fresh. Issue 16, item 4: putting back an old anchor
and cutting the table to match used to pass.

The vault here runs no jobs: each test runs the anchor job by hand with a moved clock."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from crypto.mac import keyed_hash
from tests.support import ServerThread, Tenant, make_tenant, private_server
from vault.blobs.base import BlobStore
from vault.blobs.filesystem import FilesystemBlobStore
from vault.runtime import OperatorContext, operator_context
from vault.services.access_anchor import (
    HistoryEntry,
    history_key,
    history_prefix,
    legacy_anchor_key,
    pointer_key,
    walk_history,
)
from vault.services.access_audit import verify_chains
from workers.access_anchor import POINTER_EVERY, AnchorMemory, prune_anchors, publish_anchors

ROUND = timedelta(seconds=30)


@asynccontextmanager
async def _operator(server: ServerThread) -> AsyncIterator[OperatorContext]:
    async with operator_context(server.settings, server.database_url) as ctx:
        yield ctx


async def _round(
    ctx: OperatorContext,
    at: datetime,
    memory: AnchorMemory | None = None,
    blobs: BlobStore | None = None,
    retain_days: int = 35,
) -> int:
    """One round of the anchor job at `at`; a fresh memory is a process just started."""
    return await publish_anchors(
        ctx.db, blobs or ctx.blobs, ctx.secrets.anchor_keys,
        now=at, memory=memory, retain_days=retain_days, wait=True,
    )  # fmt: skip


def _rounds(server: ServerThread, tenant: Tenant, times: list[datetime], rows: int = 1) -> None:
    """The job at each of `times` in one running process, `rows` requests before each."""

    async def run() -> None:
        memory = AnchorMemory()
        async with _operator(server) as ctx:
            for at in times:
                _requests(server, tenant, rows)
                await _round(ctx, at, memory)

    asyncio.run(run())


def _requests(server: ServerThread, tenant: Tenant, count: int) -> None:
    with server.client() as http:
        for _ in range(count):
            assert http.get("/v1/tenant", headers=tenant.auth()).status_code == 200


def _every_round(first: datetime, last: datetime) -> list[datetime]:
    times = [first]
    while times[-1] + ROUND <= last:
        times.append(times[-1] + ROUND)
    return times


def _audit_verify(
    server: ServerThread, tenant: Tenant, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": server.database_url,
        "DATAVAULT_DATA_DIR": str(server.settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "vault", "audit", *(args or ("verify",)), "--tenant", tenant.slug],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _blobs(server: ServerThread) -> Path:
    return server.settings.data_dir.resolve() / "blobs"


def _history(server: ServerThread, tenant: Tenant) -> list[Path]:
    return sorted((_blobs(server) / history_prefix(tenant.id)).glob("*.json"))


def _anchor(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_bytes())
    return document


def _as_owner(server: ServerThread, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(server.database_url)
        try:
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _head_seq(server: ServerThread, tenant: Tenant) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(server.database_url)
        try:
            seq: int = await conn.fetchval(
                "SELECT seq FROM access_log_heads WHERE tenant_id = $1", tenant.id
            )
            return seq
        finally:
            await conn.close()

    return asyncio.run(run())


def _cut_table(server: ServerThread, tenant: Tenant, keep: int) -> None:
    """What the table's owner can do: drop the rows after `keep`, move the head back."""
    where = f"tenant_id = '{tenant.id}'"
    _as_owner(
        server,
        f"DELETE FROM access_log WHERE {where} AND seq > {keep}",
        f"UPDATE access_log_heads h SET seq = {keep}, row_hash = l.row_hash FROM access_log l "
        f"WHERE h.{where} AND l.{where} AND l.seq = {keep}",
    )


def _tenant(server: ServerThread) -> Tenant:
    return make_tenant(server.settings, server.database_url)


def test_each_round_adds_one_anchor_linked_to_the_one_before(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    start = datetime.now(UTC) - 10 * ROUND

    async def run() -> list[int]:
        memory = AnchorMemory()
        counts = []
        async with _operator(quiet_vault) as ctx:
            for n, at in enumerate([start, start + ROUND, start + 2 * ROUND, start + 3 * ROUND]):
                if n < 2:  # rows before the first two rounds, none before the others
                    _requests(quiet_vault, tenant, 2)
                await _round(ctx, at, memory)
                counts.append(len(_history(quiet_vault, tenant)))
            # Another process a few seconds later: the head has not moved and the newest
            # anchor is fresh, so no second heartbeat (replicas do not multiply them).
            await _round(ctx, start + 3 * ROUND + timedelta(seconds=5))
            counts.append(len(_history(quiet_vault, tenant)))
        return counts

    assert asyncio.run(run()) == [1, 2, 3, 4, 4]
    paths = _history(quiet_vault, tenant)
    anchors = [_anchor(path) for path in paths]
    assert [a["anchor_seq"] for a in anchors] == [1, 2, 3, 4]
    assert [p.name for p in paths] == [f"{n:012d}.json" for n in (1, 2, 3, 4)]
    assert anchors[0]["prev_anchor_seq"] is None and anchors[0]["prev_anchor_sha256"] is None
    for before, path, anchor in zip(paths, paths[1:], anchors[1:], strict=False):
        assert anchor["prev_anchor_seq"] == _anchor(before)["anchor_seq"]
        assert anchor["prev_anchor_sha256"] == hashlib.sha256(before.read_bytes()).hexdigest()
        assert path.read_bytes() != before.read_bytes()
    assert [datetime.fromisoformat(str(a["anchored_at"])) for a in anchors] == [
        start + n * ROUND for n in range(4)
    ]
    seqs = [a["seq"] for a in anchors]
    # The last two are heartbeats: the chain did not grow, the anchor is written anyway.
    assert seqs[1] > seqs[0] and seqs[3] == seqs[2] == seqs[1]


def test_an_intact_history_verifies(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 4 * ROUND, now))
    result = _audit_verify(quiet_vault, tenant, "verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    [chain] = json.loads(result.stdout)["chains"]
    assert chain["ok"] is True and chain["anchors"] == 5 and chain["notes"] == []


def test_a_pause_in_the_history_is_a_note_not_a_failure(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    stopped, started = now - timedelta(minutes=20), now - ROUND
    _rounds(quiet_vault, tenant, [stopped - ROUND, stopped, started, now])
    result = _audit_verify(quiet_vault, tenant, "verify", "--json")
    assert result.returncode == 0, result.stdout
    [chain] = json.loads(result.stdout)["chains"]
    assert chain["notes"] == [
        f"anchoring paused from {stopped.isoformat()} to {started.isoformat()} (anchor 3)"
    ]


def test_an_old_anchor_put_back_with_the_table_cut_to_match_is_caught(
    quiet_vault: ServerThread,
) -> None:
    """Exactly the attack: anchors written over ten minutes with rows in between; then,
    with write access to the bucket and the table, the anchors as they were after the
    second round are put back and the table is cut to the head they anchor."""
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    times = _every_round(now - 20 * ROUND, now)
    _rounds(quiet_vault, tenant, times[:2])
    anchors = _blobs(quiet_vault) / "audit-heads" / str(tenant.id)
    then = {p.relative_to(anchors): p.read_bytes() for p in anchors.rglob("*") if p.is_file()}
    anchored_then = _head_seq(quiet_vault, tenant)
    _rounds(quiet_vault, tenant, times[2:])
    assert _audit_verify(quiet_vault, tenant).returncode == 0

    shutil.rmtree(anchors)
    for relative, data in then.items():
        (anchors / relative).parent.mkdir(parents=True, exist_ok=True)
        (anchors / relative).write_bytes(data)
    _cut_table(quiet_vault, tenant, anchored_then)

    result = _audit_verify(quiet_vault, tenant)
    assert result.returncode == 1
    # The history itself holds together; its newest anchor is old.
    assert "BROKEN (anchors): the newest anchor, 2, was written " in result.stdout
    assert "(stale)" in result.stdout


def test_an_old_anchor_copied_over_the_newest_is_caught(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 5 * ROUND, now))
    paths = _history(quiet_vault, tenant)
    anchored_then = int(str(_anchor(paths[1])["seq"]))
    for path in paths[2:-1]:
        path.unlink()
    paths[-1].write_bytes(paths[1].read_bytes())  # fresh name, old content
    _cut_table(quiet_vault, tenant, anchored_then)
    result = _audit_verify(quiet_vault, tenant)
    assert result.returncode == 1
    assert "BROKEN (anchors): anchors 3 to 5 are missing from the history" in result.stdout


def test_deleting_the_newest_anchor_leaves_a_gap_once_the_job_runs_on(
    quiet_vault: ServerThread,
) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)

    async def run() -> None:
        memory = AnchorMemory()  # one running process throughout
        async with _operator(quiet_vault) as ctx:
            await _round(ctx, now - 2 * ROUND, memory)
            _requests(quiet_vault, tenant, 1)
            await _round(ctx, now - ROUND, memory)
            _history(quiet_vault, tenant)[-1].unlink()
            _requests(quiet_vault, tenant, 1)
            await _round(ctx, now, memory)

    asyncio.run(run())
    result = _audit_verify(quiet_vault, tenant)
    assert result.returncode == 1
    assert "BROKEN (anchors): anchor 2 is missing from the history" in result.stdout


def test_deleting_the_newest_anchor_of_a_stopped_deployment_makes_it_stale(
    quiet_vault: ServerThread,
) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 15 * ROUND, now - 4 * ROUND))
    # Stopped two minutes ago: verify with a bound a little over that (less than a round).
    assert _audit_verify(quiet_vault, tenant, "verify", "--max-anchor-age", "145").returncode == 0
    _history(quiet_vault, tenant)[-1].unlink()
    result = _audit_verify(quiet_vault, tenant, "verify", "--max-anchor-age", "145")
    assert result.returncode == 1
    assert "(stale)" in result.stdout


def test_a_changed_byte_in_an_anchor_in_the_middle_is_caught(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 3 * ROUND, now))
    middle = _history(quiet_vault, tenant)[1]
    data = middle.read_bytes()
    at = data.index(b'"row_hash": "') + len(b'"row_hash": "')
    middle.write_bytes(data[:at] + (b"0" if data[at : at + 1] != b"0" else b"1") + data[at + 1 :])
    result = _audit_verify(quiet_vault, tenant)
    assert result.returncode == 1
    assert "BROKEN (anchors): anchor 2: anchor signature does not verify" in result.stdout


def test_a_stopped_deployment_verifies_with_max_anchor_age_and_fails_without(
    quiet_vault: ServerThread,
) -> None:
    tenant = _tenant(quiet_vault)
    stopped = datetime.now(UTC) - timedelta(minutes=10)
    _rounds(quiet_vault, tenant, _every_round(stopped - 3 * ROUND, stopped))
    stale = _audit_verify(quiet_vault, tenant)
    assert stale.returncode == 1
    assert "the newest anchor, 4, was written" in stale.stdout
    assert "the bound is 120 s" in stale.stdout
    allowed = _audit_verify(quiet_vault, tenant, "verify", "--max-anchor-age", "900", "--json")
    assert allowed.returncode == 0, allowed.stdout
    assert json.loads(allowed.stdout)["max_anchor_age_seconds"] == 900
    refused = _audit_verify(quiet_vault, tenant, "verify", "--max-anchor-age", "0")
    assert refused.returncode == 2


def test_a_table_cut_below_an_anchored_head_is_caught(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 2 * ROUND, now), rows=2)
    _cut_table(quiet_vault, tenant, 2)
    result = _audit_verify(quiet_vault, tenant)
    assert result.returncode == 1
    assert "chain ends at 2, but row" in result.stdout and "(cut off)" in result.stdout


def test_a_chain_whose_anchors_were_all_removed_is_caught(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 2 * ROUND, now))
    shutil.rmtree(_blobs(quiet_vault) / "audit-heads" / str(tenant.id))
    # A tenant created since the last round has no anchor yet, and that is fine…
    assert _audit_verify(quiet_vault, tenant).returncode == 0
    # …one older than the bound must have one.
    _as_owner(
        quiet_vault,
        f"UPDATE tenants SET created_at = now() - interval '1 hour' WHERE id = '{tenant.id}'",
    )
    result = _audit_verify(quiet_vault, tenant)
    assert result.returncode == 1
    assert "no anchor in the blob store for this chain" in result.stdout


def test_a_cut_chain_is_anchored_again_only_after_the_operator_reanchors(
    quiet_vault: ServerThread,
) -> None:
    """A backup restore (or a recorded incident) cuts the chain: the job writes no anchor
    for it (the history must not continue from a contradicting chain) until the operator
    re-anchors; verify then reports the earlier problem as acknowledged."""
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 2 * ROUND, now - ROUND), rows=2)
    _cut_table(quiet_vault, tenant, 2)
    _rounds(quiet_vault, tenant, [now], rows=0)
    assert len(_history(quiet_vault, tenant)) == 2
    assert "(cut off)" in _audit_verify(quiet_vault, tenant).stdout

    again = _audit_verify(quiet_vault, tenant, "reanchor", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["anchor_seq"] == 3
    result = _audit_verify(quiet_vault, tenant, "verify", "--json")
    assert result.returncode == 0, result.stdout
    [chain] = json.loads(result.stdout)["chains"]
    assert chain["anchors"] == 3
    [note] = chain["notes"]  # the cut is the chain's, not the history's: nothing more
    assert note.startswith("re-anchored by the operator at ") and note.endswith(
        "(anchor 3) at row 2"
    )
    _rounds(quiet_vault, tenant, [datetime.now(UTC)])
    assert len(_history(quiet_vault, tenant)) == 4


def test_a_reanchoring_acknowledges_a_damaged_anchor_before_it(quiet_vault: ServerThread) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    _rounds(quiet_vault, tenant, _every_round(now - 3 * ROUND, now - ROUND))
    _history(quiet_vault, tenant)[1].unlink()
    assert "anchor 2 is missing" in _audit_verify(quiet_vault, tenant).stdout
    assert _audit_verify(quiet_vault, tenant, "reanchor").returncode == 0
    result = _audit_verify(quiet_vault, tenant, "verify", "--json")
    assert result.returncode == 0, result.stdout
    [note] = json.loads(result.stdout)["chains"][0]["notes"]
    assert note.startswith("re-anchored by the operator at ")
    assert note.endswith("acknowledging: anchor 2 is missing from the history")


def _v1_anchor(ctx: OperatorContext, tenant: Tenant, at: datetime) -> bytes:
    """An anchor as the vault wrote them before signing (format v1, HMAC-SHA256 under the
    anchor MAC key), the single object `latest.json`, of the empty chain."""
    fields = {
        "format": "datavault.access-log-anchor",
        "v": 1,
        "tenant_id": str(tenant.id),
        "seq": 0,
        "row_hash": bytes(32).hex(),
        "anchored_at": at.isoformat(),
    }
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    mac = keyed_hash(ctx.secrets.access_log_anchor_key, message).hex()
    return json.dumps({**fields, "mac": mac}, sort_keys=True).encode()


def test_the_single_anchor_of_earlier_versions_starts_the_history(
    quiet_vault: ServerThread,
) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    legacy = _blobs(quiet_vault) / legacy_anchor_key(tenant.id)

    async def upgrade() -> None:
        async with _operator(quiet_vault) as ctx:
            legacy.parent.mkdir(parents=True, exist_ok=True)
            legacy.write_bytes(_v1_anchor(ctx, tenant, now - 10 * ROUND))
            await _round(ctx, now - ROUND)
            # A process of the earlier version, still running during a rolling upgrade,
            # rewrites its single anchor after the history began.
            legacy.write_bytes(_v1_anchor(ctx, tenant, now))

    asyncio.run(upgrade())
    [anchor_1] = _history(quiet_vault, tenant)
    assert _anchor(anchor_1)["prev_anchor_seq"] == 0
    result = _audit_verify(quiet_vault, tenant, "verify", "--json")
    assert result.returncode == 0, result.stdout
    [chain] = json.loads(result.stdout)["chains"]
    assert chain["anchors"] == 2
    assert chain["notes"] == [
        "latest.json was rewritten after the history began (a process of an earlier "
        "version was still anchoring)"
    ]
    document = json.loads(legacy.read_bytes())
    document["anchored_at"] = (now - 20 * ROUND).isoformat()
    legacy.write_text(json.dumps(document))
    result = _audit_verify(quiet_vault, tenant)
    assert result.returncode == 1
    assert "anchor 0: anchor MAC does not verify" in result.stdout


def test_anchors_past_their_retention_are_pruned_from_the_start(
    quiet_vault: ServerThread,
) -> None:
    tenant = _tenant(quiet_vault)
    now = datetime.now(UTC)
    days = [now - timedelta(days=d) for d in (6, 5, 4, 3, 2, 1)]

    async def run() -> list[HistoryEntry]:
        async with _operator(quiet_vault) as ctx:
            legacy = _blobs(quiet_vault) / legacy_anchor_key(tenant.id)
            legacy.parent.mkdir(parents=True, exist_ok=True)
            legacy.write_bytes(_v1_anchor(ctx, tenant, now - timedelta(days=7)))
            for at in days:
                await _round(ctx, at, AnchorMemory(), retain_days=35)
            assert len(_history(quiet_vault, tenant)) == 6
            # Retention 2 days: locked until 3 days after writing, pruned after that.
            await _round(ctx, now, AnchorMemory(), retain_days=2)
            # The newest is never pruned, however old.
            pruned = await prune_anchors(
                ctx.blobs, ctx.secrets.anchor_keys, tenant.id, 7, now + timedelta(days=30), 2
            )
            assert pruned == 3
            return [e async for e in walk_history(ctx.blobs, ctx.secrets.anchor_keys, tenant.id)]

    entries = asyncio.run(run())
    assert [e.anchor_seq for e in entries] == [7]
    assert all(e.problem is None for e in entries)
    assert not (_blobs(quiet_vault) / legacy_anchor_key(tenant.id)).exists()


class _CountingStore(FilesystemBlobStore):
    """The filesystem store, recording each listing's prefix and starting key."""

    def __init__(self, inner: BlobStore) -> None:
        assert isinstance(inner, FilesystemBlobStore)
        super().__init__(inner.root)
        self.listings: list[tuple[str, str, int | None]] = []

    async def list_keys(
        self, prefix: str, *, start_after: str = "", limit: int | None = None
    ) -> list[str]:
        self.listings.append((prefix, start_after, limit))
        return await super().list_keys(prefix, start_after=start_after, limit=limit)


def test_the_newest_anchor_is_found_from_the_pointer_which_is_never_trusted(
    quiet_vault: ServerThread,
) -> None:
    tenant = _tenant(quiet_vault)
    start = datetime.now(UTC) - timedelta(hours=1)
    prefix = history_prefix(tenant.id)
    pointer = _blobs(quiet_vault) / pointer_key(tenant.id)

    async def run() -> None:
        async with _operator(quiet_vault) as ctx:
            memory = AnchorMemory()
            for n in range(POINTER_EVERY * 2 + 5):
                await _round(ctx, start + n * ROUND, memory)
            assert json.loads(pointer.read_bytes())["anchor_seq"] == POINTER_EVERY * 2
            # A running process lists only what came after the anchor it wrote last.
            store = _CountingStore(ctx.blobs)
            await _round(ctx, start + 50 * ROUND, memory, blobs=store)
            assert (prefix, history_key(tenant.id, 45), None) in store.listings
            # A process just started lists from where the pointer says: one request.
            store = _CountingStore(ctx.blobs)
            await _round(ctx, start + 51 * ROUND, blobs=store)
            assert (prefix, history_key(tenant.id, POINTER_EVERY * 2), None) in store.listings
            assert (prefix, "", None) not in store.listings  # (pruning looks at the oldest)
            # A pointer moved back, or past the end, costs a longer listing, not a fork.
            for wrong in (1, 999):
                pointer.write_text(
                    json.dumps({**json.loads(pointer.read_bytes()), "anchor_seq": wrong})
                )
                await _round(ctx, start + (52 + wrong % 7) * ROUND)
            pointer.write_text("not json")
            await _round(ctx, start + 60 * ROUND)

    asyncio.run(run())
    anchors = [_anchor(path) for path in _history(quiet_vault, tenant)]
    assert [a["anchor_seq"] for a in anchors] == list(range(1, 51))

    async def check() -> list[datetime]:
        async with _operator(quiet_vault) as ctx:
            entries = [e async for e in walk_history(ctx.blobs, ctx.secrets.anchor_keys, tenant.id)]
            assert [e.problem for e in entries if e.problem] == []
            reports = await verify_chains(
                ctx.db, ctx.blobs, ctx.secrets.anchor_keys, tenant.id,
                now=start + 60 * ROUND,
            )  # fmt: skip
            assert reports[0].ok, reports[0].problem
            return [e.stored.anchor.anchored_at for e in entries if e.stored]

    assert len(asyncio.run(check())) == 50


def test_a_vault_stopping_anchors_the_rows_of_its_last_requests(
    pg_admin_url: str, tmp_path: Path
) -> None:
    with private_server(pg_admin_url, tmp_path / "stopping") as server:  # runs no jobs
        tenant = _tenant(server)
        _requests(server, tenant, 3)
        assert _history(server, tenant) == []
    [anchor] = _history(server, tenant)
    assert _anchor(anchor)["seq"] == _head_seq(server, tenant) == 3
    assert _audit_verify(server, tenant).returncode == 0
