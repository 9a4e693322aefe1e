"""Signed shred-ledger objects: write access to the bucket alone cannot add entries the
vault applies. An appended entry that is unsigned, or signed by a key the deployment
never published, is refused by start-up and by `datavault ledger verify`, naming its
sequence, and destroys, restores or releases nothing; a ledger written before signing
still verifies, and start-up closes its unsigned window at once; objects signed by a
retired receipt key still verify. Filesystem store, and a SeaweedFS bucket with Object
Lock."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest

from crypto import signing
from tests.api.helpers import auth, create_key, put_record
from tests.jobs import run_worker_pass
from tests.seaweed import SeaweedS3
from tests.support import free_port, make_tenant, new_database, running_server
from vault.blobs.base import BlobStore
from vault.config import Settings
from vault.runtime import OperatorContext, operator_context
from vault.services.ledger import LedgerError, reconcile_on_start, verify_ledger
from vault.services.ledger_objects import GENESIS, LEDGER_PREFIX, encode_entry, entry_key
from vault.services.ledger_watermark import watermark_for
from vault.services.receipts import ReceiptSigner, key_id_for

T = TypeVar("T")

FORGERIES = ["unsigned", "foreign key", "foreign key under the deployment's kid"]


def _run(settings: Settings, work: Callable[[OperatorContext], Awaitable[T]]) -> T:
    async def go() -> T:
        async with operator_context(settings, settings.database_url or "") as ctx:
            return await work(ctx)

    return asyncio.run(go())


def _sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url or "",
           "DATAVAULT_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "vault", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _foreign_signer(forgery: str, own_kid: str) -> ReceiptSigner | None:
    """What someone without the receipt key can sign with: nothing, or a key of their own
    (named by its own kid, or by the deployment's)."""
    if forgery == "unsigned":
        return None
    key = signing.generate_signing_key()
    kid = own_kid if forgery.endswith("kid") else key_id_for(signing.public_key(key))
    return ReceiptSigner(kid, key)


def _unsigned_object(seq: int, prev: bytes, entries: list[dict[str, Any]]) -> bytes:
    """A ledger object exactly as the vault wrote them before ledger signing."""
    document = {"format": "datavault.shred-ledger", "v": 1, "seq": seq, "prev": prev.hex(),
                "entries": entries}  # fmt: skip
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


async def _append(
    blobs: BlobStore, entries: list[dict[str, Any]], signer: ReceiptSigner | None
) -> int:
    """An object after the ledger's last, correctly chained, as someone who can write the
    bucket would add it. Returns its seq."""
    last = (await blobs.list_keys(LEDGER_PREFIX))[-1]
    seq = int(last.removeprefix(LEDGER_PREFIX).removesuffix(".json")) + 1
    prev = hashlib.sha256(await blobs.get(last)).digest()
    if signer is None:
        data = _unsigned_object(seq, prev, entries)
    else:
        data, _ = encode_entry(seq, prev, entries, signer)
    await blobs.put_retained(entry_key(seq), data, datetime.now(UTC) + timedelta(days=1))
    return seq


def _key_entries(tenant_id: uuid.UUID, key_ids: list[str]) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [
        {"tenant_id": str(tenant_id), "outbox_id": 10_000 + n, "key_kind": "subject",
         "key_id": key_id, "erasure_id": None, "destroyed_at": now}
        for n, key_id in enumerate(key_ids)
    ]  # fmt: skip


def _live_subject_keys(url: str) -> list[str]:
    rows = _sql(url, "SELECT id::text FROM subject_keys WHERE wrapped_key IS NOT NULL")
    return sorted(r[0] for r in rows)


async def _start_check(ctx: OperatorContext) -> int:
    """What start-up runs before serving."""
    return await reconcile_on_start(ctx.db, ctx.blobs, watermark_for(ctx.root, ctx.blobs))


def _refused(settings: Settings, match: str) -> None:
    with pytest.raises(LedgerError, match=match):
        _run(settings, _start_check)
    verify = _cli(settings, "ledger", "verify", "--json")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert re.search(match, json.loads(verify.stdout)["problem"])
    # The vault itself does not start on it (its own process: the refusal exits).
    api = _cli(settings, "api", "--host", "127.0.0.1", "--port", str(free_port()))
    assert api.returncode != 0
    assert re.search(match, api.stdout + api.stderr), api.stdout + api.stderr


@pytest.mark.parametrize("forgery", FORGERIES)
def test_an_appended_entry_naming_held_keys_is_refused_and_destroys_nothing(
    private_vault: Settings, forgery: str
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        assert put_record(http, app, "victim", "profile", b'{"x": 1}').status_code == 201
    held = _live_subject_keys(url)
    assert held
    own_kid = _sql(url, "SELECT kid FROM receipt_keys")[0][0]
    signer = _foreign_signer(forgery, own_kid)

    async def forge(ctx: OperatorContext) -> int:
        return await _append(ctx.blobs, _key_entries(tenant.id, held), signer)

    seq = _run(private_vault, forge)
    reason = "is not signed" if signer is None else "does not verify"
    _refused(private_vault, f"ledger entry {seq} {reason}")
    assert _live_subject_keys(url) == held  # nothing destroyed

    # Without it, the vault starts and the record is there.
    (private_vault.data_dir / "blobs" / entry_key(seq)).unlink()
    with running_server(private_vault, url) as server, server.client() as http:
        read = http.get("/v1/subjects/victim/records/profile", headers=auth(app))
    assert read.status_code == 200, read.text


@pytest.mark.parametrize("forgery", ["unsigned", "foreign key"])
def test_a_forged_hold_release_is_refused_and_the_hold_stands(
    private_vault: Settings, forgery: str
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    with running_server(private_vault, url) as server, server.client() as http:
        compliance = create_key(http, tenant, ["compliance"])
        placed = http.post(
            "/v1/holds",
            json={"subject_ref": "defendant", "reason": "litigation", "reference": "CASE-1"},
            headers=auth(compliance),
        )
        assert placed.status_code == 201, placed.text
    hold_id = placed.json()["id"]
    ledger = sorted((private_vault.data_dir / "blobs" / "ledger").iterdir())
    recorded = [
        e
        for path in ledger
        for e in json.loads(path.read_bytes())["ledger_entry"]["entries"]
        if e.get("fact", {}).get("hold_id") == hold_id
    ]
    assert len(recorded) == 1  # the placement, signed
    release = {**recorded[0], "outbox_id": 99_999, "destroyed_at": datetime.now(UTC).isoformat()}
    release["fact"] = {**release["fact"], "released_at": datetime.now(UTC).isoformat(),
                       "released_by": str(uuid.uuid4())}  # fmt: skip
    signer = _foreign_signer(forgery, "")

    async def forge(ctx: OperatorContext) -> int:
        return await _append(ctx.blobs, [release], signer)

    seq = _run(private_vault, forge)
    _refused(private_vault, f"ledger entry {seq} (is not signed|does not verify)")
    [[released_at]] = _sql(url, "SELECT released_at FROM holds WHERE id = $1", uuid.UUID(hold_id))
    assert released_at is None  # the hold stands


def _write_old_ledger(settings: Settings, tenant_id: uuid.UUID, objects: int) -> list[bytes]:
    """A ledger as the release before ledger signing left it: unsigned objects, the
    database's head at the last and no signed object recorded."""
    folder = settings.data_dir.resolve() / "blobs" / "ledger"
    folder.mkdir(parents=True, exist_ok=True)
    written, prev = [], GENESIS
    for seq in range(1, objects + 1):
        entries = [
            {"tenant_id": str(tenant_id), "outbox_id": seq, "key_kind": "data",
             "key_id": str(uuid.uuid4()), "erasure_id": None,
             "destroyed_at": "2026-11-01T12:00:00+00:00"}
        ]  # fmt: skip
        data = _unsigned_object(seq, prev, entries)
        (folder / entry_key(seq).removeprefix(LEDGER_PREFIX)).write_bytes(data)
        written.append(data)
        prev = hashlib.sha256(data).digest()
    _set_head(settings, objects, prev, None)
    return written


def _set_head(settings: Settings, seq: int, head: bytes, signed_from: int | None) -> None:
    _sql(
        settings.database_url or "",
        "INSERT INTO ledger_head (singleton, seq, entry_hash, signed_from) "
        "VALUES (true, $1, $2, $3) ON CONFLICT (singleton) "
        "DO UPDATE SET seq = $1, entry_hash = $2, signed_from = $3",
        seq, head, signed_from,
    )  # fmt: skip


def test_a_ledger_written_before_signing_verifies_and_start_up_closes_its_window(
    private_vault: Settings,
) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    old = _write_old_ledger(private_vault, tenant.id, 3)
    before = _cli(private_vault, "ledger", "verify", "--json")
    assert before.returncode == 0, before.stdout + before.stderr
    summary = json.loads(before.stdout)
    assert (summary["objects"], summary["signed_from"]) == (3, None)

    # The first start after the upgrade writes the signed marker at once, nothing pending.
    with running_server(private_vault, url, run_jobs=False):
        pass
    marker = json.loads((private_vault.data_dir / "blobs" / entry_key(4)).read_bytes())
    assert marker["ledger_entry"]["entries"] == []
    assert marker["ledger_entry"]["prev"] == hashlib.sha256(old[-1]).hexdigest()
    assert tuple(_sql(url, "SELECT seq, signed_from FROM ledger_head")[0]) == (4, 4)
    after = _cli(private_vault, "ledger", "verify")
    assert after.returncode == 0 and "signed from entry 4" in after.stdout, after.stdout

    # A backup from before the upgrade (head 1, no signed object known) still starts:
    # the unsigned objects before the marker are the old ledger.
    head_one = hashlib.sha256(old[0]).digest()
    _set_head(private_vault, 1, head_one, None)
    assert _run(private_vault, _start_check) == 0

    # An unsigned object appended after the marker is refused, from that backup's head
    # (the walk meets the marker first) and from the upgraded database's.
    async def forge(ctx: OperatorContext) -> int:
        return await _append(ctx.blobs, _key_entries(tenant.id, [str(uuid.uuid4())]), None)

    seq = _run(private_vault, forge)
    assert seq == 5
    with pytest.raises(LedgerError, match=r"ledger entry 5 is not signed.*from entry 4 on"):
        _run(private_vault, _start_check)
    marker_hash = hashlib.sha256((private_vault.data_dir / "blobs" / entry_key(4)).read_bytes())
    _set_head(private_vault, 4, marker_hash.digest(), 4)
    _refused(private_vault, "ledger entry 5 is not signed")
    (private_vault.data_dir / "blobs" / entry_key(5)).unlink()

    # The signed marker vouches for the old objects before it: one changed breaks its link.
    third = private_vault.data_dir / "blobs" / entry_key(3)
    third.write_bytes(old[2].replace(b"2026-11-01", b"2026-11-02"))
    changed = _cli(private_vault, "ledger", "verify")
    assert changed.returncode == 1 and "entry 4 does not link" in changed.stdout, changed.stdout
    third.write_bytes(old[2])
    assert _cli(private_vault, "ledger", "verify").returncode == 0


def test_objects_signed_by_a_retired_receipt_key_still_verify(private_vault: Settings) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)

    def put_and_erase(ref: str) -> None:
        with running_server(private_vault, url) as server, server.client() as http:
            app = create_key(http, tenant, ["ingest"])
            assert put_record(http, app, ref, "profile", b"{}").status_code == 201
            privacy = create_key(http, tenant, ["erasure"])
            assert http.post(f"/v1/subjects/{ref}/erasure", headers=auth(privacy)).is_success
            run_worker_pass(server)  # the executor shreds, the ledger publisher publishes

            async def published(ctx: OperatorContext) -> None:
                async with ctx.db.untenanted_tx() as conn:
                    assert not await conn.fetchval(
                        "SELECT count(*) FROM ledger_outbox WHERE published_at IS NULL"
                    ), "the ledger did not publish"

            _run(private_vault, published)

    put_and_erase("first")
    [[retired]] = _sql(url, "UPDATE receipt_keys SET retired_at = now() RETURNING kid")
    put_and_erase("second")  # a new receipt key signs from here on
    kids = {
        json.loads(path.read_bytes())["key_id"]
        for path in (private_vault.data_dir / "blobs" / "ledger").iterdir()
    }
    assert retired in kids and len(kids) == 2
    verify = _cli(private_vault, "ledger", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # A restored backup from before both replays every object, each under its own key.
    _sql(url, "UPDATE ledger_head SET seq = 0, entry_hash = $1", GENESIS)
    _run(private_vault, _start_check)


def test_on_an_object_lock_bucket_an_appended_entry_is_refused(
    settings: Settings, pg_admin_url: str, seaweed_s3: SeaweedS3
) -> None:
    bucket = f"locked-{uuid.uuid4().hex[:10]}"
    seaweed_s3.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    vault = dataclasses.replace(
        settings, database_url=new_database(pg_admin_url), s3_bucket=bucket,
        s3_endpoint_url=seaweed_s3.endpoint_url, s3_region="us-east-1",
    )  # fmt: skip
    url = vault.database_url or ""
    tenant = make_tenant(vault, url)
    with running_server(vault, url) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest"])
        assert put_record(http, app, "victim", "profile", b"{}").status_code == 201
    held = _live_subject_keys(url)

    async def forge(ctx: OperatorContext) -> int:
        return await _append(ctx.blobs, _key_entries(tenant.id, held), None)

    async def verify(ctx: OperatorContext) -> None:
        await verify_ledger(ctx.db, ctx.blobs, watermark_for(ctx.root, ctx.blobs))

    seq = _run(vault, forge)
    with pytest.raises(LedgerError, match=f"ledger entry {seq} is not signed"):
        _run(vault, _start_check)
    with pytest.raises(LedgerError, match=f"ledger entry {seq} is not signed"):
        _run(vault, verify)
    assert _live_subject_keys(url) == held
