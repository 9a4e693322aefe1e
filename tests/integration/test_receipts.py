"""The receipt signing key in the database, `GET /v1/receipt-keys`, `datavault receipt
verify` (offline with --jwks, or against the running deployment at --url)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crypto import signing
from crypto.errors import IntegrityError
from tests.support import ServerThread, free_port
from vault.config import Settings
from vault.db.database import Database
from vault.runtime import operator_context
from vault.services.receipt_verify import verify_signed_receipt
from vault.services.receipts import (
    ReceiptSigner,
    b64url,
    build_receipt,
    key_id_for,
    published_keys,
    receipt_keys_under_epoch,
    rewrap_receipt_keys,
)
from vault.services.root_epochs import EpochManagedProvider


def _url(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url


def _owner_fetch(database_url: str, query: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def _load_signer(settings: Settings, database_url: str) -> ReceiptSigner:
    async def run() -> ReceiptSigner:
        async with operator_context(settings, database_url) as ctx:
            return await ReceiptSigner.load_or_create(ctx.db, ctx.root)

    return asyncio.run(run())


def _receipt(final: bool = True) -> dict[str, Any]:
    now = datetime.now(UTC)
    return build_receipt(
        issuer="datavault-test",
        tenant_id=uuid.uuid4(),
        erasure_id=uuid.uuid4(),
        subject_ref_hash=os.urandom(32),
        requested_at=now - timedelta(hours=1),
        completed_at=now if final else None,
        final=final,
        shredded=[{"category": "recordings", "key_id": uuid.uuid4(), "destroyed_at": now}],
        held=[] if final else [{"category": "billing", "hold_ids": [uuid.uuid4()]}],
        retained=[],
        backups_unreadable_after=now + timedelta(days=60),
    )


def test_concurrent_first_starts_create_one_key(private_vault: Settings) -> None:
    url = _url(private_vault)

    async def run() -> tuple[str, ...]:
        async with operator_context(private_vault, url) as ctx:
            # Separate pools, as separate processes starting together would have.
            dbs = [await Database.connect(url, max_size=1) for _ in range(4)]
            try:
                signers = await asyncio.gather(
                    *(ReceiptSigner.load_or_create(db, ctx.root) for db in dbs)
                )
                again = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
            finally:
                for db in dbs:
                    await db.close()
            return (*(s.kid for s in signers), again.kid)

    kids = asyncio.run(run())
    assert len(set(kids)) == 1
    rows = _owner_fetch(url, "SELECT kid, public_key FROM receipt_keys")
    assert [r["kid"] for r in rows] == [kids[0]]
    assert kids[0] == key_id_for(bytes(rows[0]["public_key"]))
    assert kids[0].startswith("rk-") and len(kids[0]) == 19


def test_private_key_is_stored_only_wrapped(private_vault: Settings) -> None:
    url = _url(private_vault)
    signer = _load_signer(private_vault, url)
    seed = signer._key.reveal()
    assert len(seed) == 32
    (row,) = _owner_fetch(url, "SELECT * FROM receipt_keys")
    stored = b"".join(bytes(v) if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert seed not in stored
    assert seed.hex().encode() not in stored
    assert bytes(row["public_key"]) == signer.public_key
    assert row["root_epoch"] == 1
    assert row["retired_at"] is None
    # A second process unwraps the same key: its signatures verify under the stored key.
    document = _load_signer(private_vault, url).sign(_receipt())
    jwks = asyncio.run(_published(url))
    assert verify_signed_receipt(document, jwks) == document["receipt"]


async def _published(url: str) -> dict[str, Any]:
    db = await Database.connect(url, max_size=1)
    try:
        return await published_keys(db)
    finally:
        await db.close()


def test_a_wrapped_key_moved_to_another_kid_does_not_load(private_vault: Settings) -> None:
    url = _url(private_vault)
    signer = _load_signer(private_vault, url)
    other = signing.public_key(signing.generate_signing_key())

    async def swap() -> None:
        conn = await asyncpg.connect(url)
        try:
            # A forged row: someone else's public key and kid, with our wrapped private key.
            await conn.execute(
                "UPDATE receipt_keys SET kid = $1, public_key = $2",
                key_id_for(other),
                other,
            )
        finally:
            await conn.close()

    asyncio.run(swap())
    with pytest.raises(IntegrityError):
        _load_signer(private_vault, url)
    assert signer.kid != key_id_for(other)


def test_new_root_epoch_rewraps_the_receipt_key(private_vault: Settings) -> None:
    url = _url(private_vault)

    async def run() -> None:
        async with operator_context(private_vault, url) as ctx:
            first = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
            assert isinstance(ctx.root, EpochManagedProvider)
            await asyncio.to_thread(ctx.root.add_epoch)
            assert await receipt_keys_under_epoch(ctx.db, 1) == 1
            assert await rewrap_receipt_keys(ctx.db, ctx.root) == 1
            assert await rewrap_receipt_keys(ctx.db, ctx.root) == 0
            assert await receipt_keys_under_epoch(ctx.db, 1) == 0
            again = await ReceiptSigner.load_or_create(ctx.db, ctx.root)
            assert again.kid == first.kid

    asyncio.run(run())


def test_receipt_keys_endpoint_publishes_the_key(
    server: ServerThread, settings: Settings, database_url: str
) -> None:
    signer = _load_signer(settings, database_url)
    with server.client() as http:
        response = http.get("/v1/receipt-keys")  # no Authorization header
        head = http.head("/v1/receipt-keys")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert head.status_code == 200
    keys = response.json()["keys"]
    ours = [k for k in keys if k["kid"] == signer.kid]
    assert ours == [
        {"kty": "OKP", "crv": "Ed25519", "kid": signer.kid, "x": b64url(signer.public_key),
         "use": "sig", "alg": "Ed25519"}
    ]  # fmt: skip


def test_receipt_keys_are_in_the_openapi_document(server: ServerThread) -> None:
    with server.client() as http:
        paths = http.get("/openapi.json").json()["paths"]
    operation = paths["/v1/receipt-keys"]["get"]
    assert "security" not in operation


def _receipt_verify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vault", "receipt", "verify", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def signed_files(
    server: ServerThread, settings: Settings, database_url: str, tmp_path: Path
) -> tuple[Path, Path, dict[str, Any]]:
    document = _load_signer(settings, database_url).sign(_receipt())
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(document, indent=2))
    with server.client() as http:
        jwks_file = tmp_path / "keys.json"
        jwks_file.write_bytes(http.get("/v1/receipt-keys").content)
    return receipt_file, jwks_file, document


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # If the command looked for a database it would start one here; it must not.
    env["DATAVAULT_DATA_DIR"] = str(tmp_path / "no-vault-here")
    return env


def test_cli_verifies_offline_with_jwks(
    signed_files: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    receipt_file, jwks_file, document = signed_files
    env = _offline_env(tmp_path)
    result = _receipt_verify(env, str(receipt_file), "--jwks", str(jwks_file))
    assert result.returncode == 0, result.stderr
    erasure_id = document["receipt"]["erasure_id"]
    assert result.stdout.strip() == (
        f"valid receipt for erasure {erasure_id} (final), signed by {document['key_id']}"
    )
    as_json = _receipt_verify(env, str(receipt_file), "--jwks", str(jwks_file), "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["valid"] is True
    assert report["erasure_id"] == erasure_id
    assert report["final"] is True
    assert report["receipt"] == document["receipt"]
    assert not (tmp_path / "no-vault-here").exists()


def test_cli_rejects_a_tampered_receipt(
    signed_files: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    receipt_file, jwks_file, document = signed_files
    tampered = json.loads(receipt_file.read_text())
    tampered["receipt"]["shredded"] = []
    tampered_file = tmp_path / "tampered.json"
    tampered_file.write_text(json.dumps(tampered))
    env = _offline_env(tmp_path)
    result = _receipt_verify(env, str(tampered_file), "--jwks", str(jwks_file))
    assert result.returncode == 1
    assert result.stdout.strip() == "invalid receipt: signature does not verify"
    as_json = _receipt_verify(env, str(tampered_file), "--jwks", str(jwks_file), "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "valid": False,
        "error": "signature does not verify",
        "exit_code": 1,
    }
    unknown = _receipt_verify(
        env, str(receipt_file), "--jwks", str(_write(tmp_path / "empty.json", {"keys": []}))
    )
    assert unknown.returncode == 1
    assert f"unknown key id {document['key_id']!r}" in unknown.stdout


def _write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_cli_exits_2_on_unreadable_or_non_json_files(
    signed_files: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    receipt_file, jwks_file, _ = signed_files
    env = _offline_env(tmp_path)
    not_json = tmp_path / "not.json"
    not_json.write_text("this is not json")
    for args in (
        [str(tmp_path / "missing.json"), "--jwks", str(jwks_file)],
        [str(not_json), "--jwks", str(jwks_file)],
        [str(receipt_file), "--jwks", str(tmp_path / "missing-keys.json")],
        [str(receipt_file), "--jwks", str(not_json)],
    ):
        result = _receipt_verify(env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("datavault: ")


def test_cli_without_jwks_reads_the_keys_of_the_running_deployment(
    signed_files: tuple[Path, Path, dict[str, Any]], server: ServerThread, tmp_path: Path
) -> None:
    receipt_file, _, document = signed_files
    env = _offline_env(tmp_path)
    result = _receipt_verify(env, str(receipt_file), "--url", server.base_url)
    assert result.returncode == 0, result.stderr
    assert f"signed by {document['key_id']}" in result.stdout
    from_setting = _receipt_verify({**env, "DATAVAULT_PUBLIC_URL": server.base_url + "/"},
                                   str(receipt_file))  # fmt: skip
    assert from_setting.returncode == 0, from_setting.stderr
    assert not (tmp_path / "no-vault-here").exists()


def test_cli_without_a_key_set_exits_2_saying_what_to_pass(
    signed_files: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    receipt_file, _, _ = signed_files
    env = {k: v for k, v in _offline_env(tmp_path).items() if k != "DATAVAULT_PUBLIC_URL"}
    result = _receipt_verify(env, str(receipt_file))
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("datavault: receipt verify needs the deployment's receipt keys: ")
    assert "--jwks FILE" in line and "--url URL" in line and "DATAVAULT_PUBLIC_URL" in line
    as_json = _receipt_verify(env, str(receipt_file), "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout) == {"error": line.removeprefix("datavault: "),
                                          "exit_code": 2}  # fmt: skip
    # A URL where no deployment answers: exit 2, nothing verified, no traceback.
    nobody = _receipt_verify(env, str(receipt_file), "--url", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 2
    assert nobody.stderr.startswith("datavault: cannot fetch the receipt key set from ")
    assert "Traceback" not in nobody.stderr
    assert not (tmp_path / "no-vault-here").exists()


def test_cli_verifies_the_jws_alone_and_against_the_well_known_key_set(
    signed_files: tuple[Path, Path, dict[str, Any]], server: ServerThread, tmp_path: Path
) -> None:
    _, _, document = signed_files
    env = _offline_env(tmp_path)
    with server.client() as http:
        well_known = _write(tmp_path / "jwks.json", http.get("/.well-known/jwks.json").json())
    jws_file = tmp_path / "receipt.jws"
    jws_file.write_text(document["jws"] + "\n")
    result = _receipt_verify(env, str(jws_file), "--jwks", str(well_known))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"valid receipt for erasure {document['receipt']['erasure_id']} (final), signed by "
        f"{document['key_id']}"
    )
    header, payload, signature = document["jws"].split(".")
    jws_file.write_text(f"{header}.{payload[:-4]}AAAA.{signature}")
    tampered = _receipt_verify(env, str(jws_file), "--jwks", str(well_known))
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("invalid receipt: jws ")
    assert not (tmp_path / "no-vault-here").exists()


def test_cli_refuses_a_document_whose_jws_says_something_else(
    signed_files: tuple[Path, Path, dict[str, Any]],
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    _, jwks_file, document = signed_files
    other = _load_signer(settings, database_url).sign(_receipt())
    mixed = _write(tmp_path / "mixed.json", {**document, "jws": other["jws"]})
    result = _receipt_verify(_offline_env(tmp_path), str(mixed), "--jwks", str(jwks_file))
    assert result.returncode == 1
    assert result.stdout.strip() == "invalid receipt: jws does not match the receipt"
