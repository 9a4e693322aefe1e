"""A tenant verifies an erasure receipt with a JOSE library and nothing of the vault's:
`joserfc` alone, against the key set the deployment serves at /.well-known/jwks.json
(API.md "Erasure"; DESIGN.md "Receipts"). The receipt's issuer is DATAVAULT_PUBLIC_URL."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet

from tests.api.helpers import auth, create_key, subject_url, uploaded
from tests.jobs import run_worker_pass
from tests.support import ServerThread, make_tenant, private_server

# Behind a TLS proxy, as in production: the vault itself listens on 127.0.0.1.
PUBLIC_URL = "https://vault.example.test"


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("receipt-jose"), public_url=PUBLIC_URL + "/"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def signed(vault: ServerThread) -> dict[str, Any]:
    """A completed erasure's signed receipt, as the tenant fetches it."""
    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        privacy = create_key(http, tenant, ["erasure"])
        uploaded(http, ingest, "jose-subject", b"a recording")
        erasure = http.post(subject_url("jose-subject", "erasure"), headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(vault)
        answer = http.get(f"/v1/erasures/{erasure.json()['id']}/receipt", headers=auth(privacy))
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def _published(vault: ServerThread) -> dict[str, Any]:
    with vault.client() as http:
        answer = http.get("/.well-known/jwks.json")  # no Authorization header
        same = http.get("/v1/receipt-keys")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert answer.json() == same.json()
    key_set: dict[str, Any] = answer.json()
    return key_set


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_joserfc_verifies_the_receipt_against_the_served_key_set(
    vault: ServerThread, signed: dict[str, Any]
) -> None:
    key_set = _published(vault)
    for key in key_set["keys"]:
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "Ed25519",
                                                                    "sig")  # fmt: skip
        assert "d" not in key
    keys = KeySet.import_key_set({"keys": key_set["keys"]})
    verified = jws.deserialize_compact(signed["jws"], keys, algorithms=["Ed25519"])
    assert verified.headers() == {
        "alg": "Ed25519", "kid": signed["key_id"], "typ": "datavault-erasure-receipt",
    }  # fmt: skip
    receipt = json.loads(verified.payload)
    assert receipt == signed["receipt"]
    assert receipt["issuer"] == PUBLIC_URL  # where the key set is found, without the slash
    assert receipt["final"] is True and receipt["shredded"]


def test_joserfc_refuses_a_tampered_receipt(vault: ServerThread, signed: dict[str, Any]) -> None:
    keys = KeySet.import_key_set({"keys": _published(vault)["keys"]})
    header, payload, signature = signed["jws"].split(".")
    changed = {**signed["receipt"], "shredded": []}
    forged_payload = _b64(json.dumps(changed, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(
            f"{header}.{forged_payload}.{signature}", keys, algorithms=["Ed25519"]
        )
    other_typ = _b64(json.dumps({"alg": "Ed25519", "kid": signed["key_id"], "typ": "JWT"}).encode())
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(f"{other_typ}.{payload}.{signature}", keys, algorithms=["Ed25519"])
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[0] ^= 1
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(
            f"{header}.{payload}.{_b64(bytes(flipped))}", keys, algorithms=["Ed25519"]
        )
    unsigned = _b64(json.dumps({"alg": "none", "kid": signed["key_id"]}).encode())
    with pytest.raises(JoseError):
        jws.deserialize_compact(f"{unsigned}.{payload}.", keys, algorithms=["Ed25519"])


def test_the_detached_signature_still_comes_with_it(signed: dict[str, Any]) -> None:
    """Receipts issued before the JWS carried only `signature`: clients that check it keep
    working, over the same canonical bytes the JWS carries."""
    assert set(signed) == {"receipt", "jws", "signature", "key_id", "alg"}
    assert signed["alg"] == "Ed25519"
    payload = signed["jws"].split(".")[1]
    canonical = json.dumps(
        signed["receipt"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert payload == _b64(canonical)


def test_a_receipt_stored_before_the_jws_is_served_with_jws_null_and_still_verifies(
    vault: ServerThread,
) -> None:
    """What an upgraded deployment holds: receipts signed before, with `signature` only.
    They are not signed again (their backup horizon may have passed since)."""
    from vault.services.receipt_verify import verify_signed_receipt

    tenant = make_tenant(vault.settings, vault.database_url)
    with vault.client() as http:
        privacy = create_key(http, tenant, ["erasure"])
        erasure = http.post(subject_url("jose-old", "erasure"), headers=auth(privacy)).json()
        run_worker_pass(vault)

        async def strip_jws() -> None:
            conn = await asyncpg.connect(vault.database_url)
            try:
                await conn.execute(
                    "UPDATE erasure_receipts SET document = document - 'jws' WHERE erasure_id = $1",
                    uuid.UUID(erasure["id"]),
                )
            finally:
                await conn.close()

        asyncio.run(strip_jws())
        answer = http.get(f"/v1/erasures/{erasure['id']}/receipt", headers=auth(privacy))
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["jws"] is None
    assert verify_signed_receipt(document, _published(vault)) == document["receipt"]
