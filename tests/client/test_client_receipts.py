"""Receipt verification with the client, offline: a real receipt from a live vault and
its key set verify; every tampering, a foreign key set, a receipt of another erasure or
issuer fails with `ReceiptInvalid`; a receipt issued before the JWS (only `signature`)
still verifies; and verifying needs nothing of the vault installed."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from datavault_client import ReceiptInvalid, canonical_json, verify_receipt
from tests.client.support import tenant_clients, unique
from tests.jobs import run_worker_pass
from tests.support import ServerThread, make_tenant, private_server

PUBLIC_URL = "https://vault.example.test"


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("client-receipts"), public_url=PUBLIC_URL
    ) as server:
        yield server


@pytest.fixture(scope="module")
def issued(vault: ServerThread) -> tuple[dict[str, Any], dict[str, Any]]:
    """A completed erasure's receipt document and the deployment's key set."""
    tenant = make_tenant(vault.settings, vault.database_url)
    with tenant_clients(vault, tenant) as keys:
        ref = unique("receipt")
        keys.app.artefacts.upload(ref, b"a recording", category="recording")
        erasure = keys.privacy.erasures.request(ref)
        run_worker_pass(vault)
        document = keys.privacy.erasures.receipt(erasure.id).document
        return document, keys.privacy.receipt_keys()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _foreign_key_set(kid: str) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    private = Ed25519PrivateKey.generate()
    x = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519", "use": "sig", "kid": kid, "x": _b64(x)}
    return private, {"keys": [jwk]}


def test_a_real_receipt_verifies_with_the_published_keys(
    issued: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    document, jwks = issued
    verified = verify_receipt(document, jwks, issuer=PUBLIC_URL, erasure_id=document["receipt"]
                              ["erasure_id"])  # fmt: skip
    assert verified.issuer == PUBLIC_URL
    assert verified.final is True and verified.key_id == document["key_id"]
    assert verified.claims == document["receipt"]
    assert verified.ledger_seq is not None and verified.ledger_head
    # The same from JSON text, as kept in a file.
    assert verify_receipt(json.dumps(document), json.dumps(jwks)) == verified


def _tampered(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    header, payload, signature = document["jws"].split(".")
    shown = copy.deepcopy(document)
    shown["receipt"]["shredded"] = []
    yield "the receipt shown beside an intact JWS", shown
    claims = {**document["receipt"], "final": False}
    forged = {**document, "jws": f"{header}.{_b64(canonical_json(claims))}.{signature}",
              "receipt": claims}  # fmt: skip
    yield "the JWS payload", forged
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[-1] ^= 1
    yield "the JWS signature", {**document, "jws": f"{header}.{payload}.{_b64(bytes(flipped))}"}
    unsigned = _b64(json.dumps({"alg": "none", "kid": document["key_id"]}).encode())
    yield "alg none", {**document, "jws": f"{unsigned}.{payload}."}
    other_typ = _b64(
        json.dumps({"alg": "Ed25519", "kid": document["key_id"], "typ": "JWT"}).encode()
    )
    yield "another typ", {**document, "jws": f"{other_typ}.{payload}.{signature}"}
    yield "the detached signature", {**document, "signature": _b64(bytes(flipped))}
    yield "another key id", {**document, "key_id": "rk-0000000000000000"}
    yield "another alg", {**document, "alg": "EdDSA"}
    yield "no signature at all", {**document, "jws": None, "signature": None}


@pytest.mark.parametrize("case", range(9))
def test_a_tampered_receipt_fails(issued: tuple[dict[str, Any], dict[str, Any]], case: int) -> None:
    document, jwks = issued
    what, tampered = list(_tampered(document))[case]
    with pytest.raises(ReceiptInvalid):
        verify_receipt(tampered, jwks)
        pytest.fail(f"{what} was changed and it still verified")


def test_keys_of_another_deployment_do_not_verify_it(
    issued: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    document, _ = issued
    _, foreign = _foreign_key_set(document["key_id"])  # same kid, another key
    with pytest.raises(ReceiptInvalid):
        verify_receipt(document, foreign)
    with pytest.raises(ReceiptInvalid):
        verify_receipt(document, {"keys": []})


def test_a_forger_with_a_key_of_their_own_is_refused(
    issued: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """A receipt signed with another key verifies only against that key's set: never
    against the deployment's."""
    document, jwks = issued
    private, foreign = _foreign_key_set(document["key_id"])
    claims = {**document["receipt"], "held": []}
    header = _b64(json.dumps({"alg": "Ed25519", "kid": document["key_id"],
                              "typ": "datavault-erasure-receipt"}).encode())  # fmt: skip
    payload = _b64(canonical_json(claims))
    signature = _b64(private.sign(f"{header}.{payload}".encode()))
    forged = {**document, "receipt": claims, "jws": f"{header}.{payload}.{signature}",
              "signature": _b64(private.sign(canonical_json(claims)))}  # fmt: skip
    assert verify_receipt(forged, foreign).claims == claims  # the forger's own set: yes
    with pytest.raises(ReceiptInvalid):
        verify_receipt(forged, jwks)


def test_a_receipt_of_another_erasure_or_issuer_fails(
    issued: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    document, jwks = issued
    with pytest.raises(ReceiptInvalid):
        verify_receipt(document, jwks, erasure_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ReceiptInvalid):
        verify_receipt(document, jwks, issuer="https://other.example.test")


def test_a_receipt_issued_before_the_jws_still_verifies(
    issued: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Older receipts carry only the detached signature over the canonical JSON."""
    document, jwks = issued
    older = {**document, "jws": None}
    assert verify_receipt(older, jwks).claims == document["receipt"]
    changed = copy.deepcopy(older)
    changed["receipt"]["final"] = False
    with pytest.raises(ReceiptInvalid):
        verify_receipt(changed, jwks)


def test_canonical_json_refuses_what_a_receipt_never_holds() -> None:
    assert (
        canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    )
    with pytest.raises(ValueError, match="float"):
        canonical_json({"a": 1.5})


def test_verifying_needs_nothing_of_the_vault(
    issued: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    """In a process where the vault's packages (and its database and web stack) cannot be
    imported at all, the client still verifies the receipt from files."""
    document, jwks = issued
    (tmp_path / "receipt.json").write_text(json.dumps(document))
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    script = """
import importlib.abc, json, sys
BLOCKED = {"vault", "crypto", "workers", "asyncpg", "starlette", "uvicorn", "boto3"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not available here")
        return None
sys.meta_path.insert(0, Block())
from datavault_client import verify_receipt
verified = verify_receipt(open("receipt.json").read(), open("jwks.json").read())
print(json.dumps({"erasure_id": verified.erasure_id,
                  "loaded": sorted(m for m in BLOCKED if m in sys.modules)}))
"""
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result == {"erasure_id": document["receipt"]["erasure_id"], "loaded": []}


def test_the_command_line_says_invalid_and_exits_1(
    issued: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    document, jwks = issued
    tampered = copy.deepcopy(document)
    tampered["receipt"]["shredded"] = []
    (tmp_path / "receipt.json").write_text(json.dumps(tampered))
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    command = [sys.executable, "-m", "datavault_client", "verify-receipt", "receipt.json",
               "--jwks", "jwks.json"]  # fmt: skip
    ran = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    assert ran.returncode == 1
    assert "INVALID" in ran.stderr and ran.stdout == ""
    missing = subprocess.run([*command[:-1], "nowhere.json"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert missing.returncode == 2
