"""A client generated from /openapi.json by openapi-python-client has every operation the
vault serves, the raw upload included, and the generated code talks to the vault."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import ServerThread, Tenant

# Not datavault_client: that is the project's own client (clients/python), installed here.
PACKAGE = "generated_datavault_client"


@pytest.fixture(scope="module")
def generated(server: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(document, package directory, generator output) for the served document."""
    with server.client() as http:
        served = http.get("/openapi.json")
    assert served.status_code == 200
    work = tmp_path_factory.mktemp("client")
    (work / "openapi.json").write_bytes(served.content)
    # No post hooks: the generator would run ruff on its output, which needs nothing here.
    (work / "config.yaml").write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n")
    run = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--meta", "none",
         "--path", "openapi.json", "--config", "config.yaml", "--output-path", PACKAGE],
        cwd=work, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return served.json(), work / PACKAGE, run.stdout + run.stderr


def _snake(operation_id: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


def test_every_operation_is_in_the_generated_client(generated: Any) -> None:
    document, package, _ = generated
    operations = [
        (operation["tags"][0], operation["operationId"])
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in {"get", "head", "put", "post", "patch", "delete"}
    ]
    assert len(operations) >= 40
    missing = []
    for tag, operation_id in operations:
        module = package / "api" / tag.replace("-", "_") / f"{_snake(operation_id)}.py"
        if not module.is_file() or "def sync_detailed(" not in module.read_text():
            missing.append(operation_id)
    assert missing == []
    generated_modules = {p.stem for p in (package / "api").glob("*/*.py") if p.stem != "__init__"}
    assert generated_modules == {_snake(operation_id) for _, operation_id in operations}


def test_the_upload_is_a_raw_body_in_the_generated_client(generated: Any) -> None:
    _, package, _ = generated
    upload = (package / "api" / "artefacts" / "upload_artefact.py").read_text()
    assert "body: File," in upload
    assert "application/octet-stream" in upload
    # Only bodies the generator cannot type (binary content, the ZIP) are left to the
    # caller as raw bytes; no operation or model is skipped.
    _, _, output = generated
    skipped = [line for line in output.splitlines() if "will be omitted" in line]
    assert all("content_type */*" in s or "application/zip" in s for s in skipped), skipped


def _import_generated(package: Path) -> ModuleType:
    sys.path.insert(0, str(package.parent))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(package.parent))


def test_the_generated_client_talks_to_the_vault(
    generated: Any, server: ServerThread, tenant: Tenant
) -> None:
    _, package, _ = generated
    _import_generated(package)
    client_module = importlib.import_module(f"{PACKAGE}.client")
    upload = importlib.import_module(f"{PACKAGE}.api.artefacts.upload_artefact")
    get_artefact = importlib.import_module(f"{PACKAGE}.api.artefacts.get_artefact")
    place_hold = importlib.import_module(f"{PACKAGE}.api.holds.place_hold")
    types = importlib.import_module(f"{PACKAGE}.types")
    models = importlib.import_module(f"{PACKAGE}.models")
    with server.client() as http:
        keys = {
            scopes: http.post(
                "/v1/api-keys",
                json={"name": "generated client", "scopes": list(scopes), "owner": "gen"},
                headers=tenant.auth(),
            ).json()["secret"]
            for scopes in (("ingest", "read"), ("compliance",))
        }
    base_url = server.base_url
    with client_module.AuthenticatedClient(base_url=base_url, token=keys[("ingest", "read")]) as c:
        created = upload.sync_detailed(
            "gen/ref one", client=c, category="recording",
            body=types.File(payload=b"RIFF0000", mime_type="audio/wav", file_name="call.wav"),
        )  # fmt: skip
        assert created.status_code == 201, created.content
        artefact = created.parsed
        # The generated client sends the declared application/octet-stream.
        assert artefact.content_type == "application/octet-stream" and artefact.size == 8
        shown = get_artefact.sync("gen/ref one", artefact.id, client=c)
        assert shown is not None and shown.sha256 == artefact.sha256
    with client_module.AuthenticatedClient(base_url=base_url, token=keys[("compliance",)]) as c:
        body = models.HoldPlacement(reason=models.HoldReason.BILLING, reference="GEN-1")
        hold = place_hold.sync(client=c, body=body)
        refused = place_hold.sync_detailed(
            client=c, body=models.HoldPlacement(reason=models.HoldReason.BILLING, reference="")
        )
    assert isinstance(hold, models.Hold) and hold.scope == "tenant"
    assert refused.status_code == 422
    assert refused.parsed.errors[0].field == "reference"


def test_the_generated_client_mints_links_records_disclosures_and_registers_webhooks(
    generated: Any, server: ServerThread, tenant: Tenant
) -> None:
    """The operations added beside the first typed ones (playback links, disclosures,
    webhooks, the JWK set) through the generated code: typed bodies in, models out."""
    _, package, _ = generated
    _import_generated(package)
    client_module = importlib.import_module(f"{PACKAGE}.client")
    api = f"{PACKAGE}.api"
    mint = importlib.import_module(f"{api}.artefacts.mint_playback_link")
    record = importlib.import_module(f"{api}.disclosures.record_disclosure")
    list_disclosures = importlib.import_module(f"{api}.disclosures.list_disclosures")
    create_webhook = importlib.import_module(f"{api}.webhooks.create_webhook")
    delete_webhook = importlib.import_module(f"{api}.webhooks.delete_webhook")
    get_jwks = importlib.import_module(f"{api}.erasures.get_jwks")
    models = importlib.import_module(f"{PACKAGE}.models")
    with server.client() as http:
        keys = {
            scope: http.post(
                "/v1/api-keys",
                json={"name": "generated client", "scopes": [scope], "owner": "gen"},
                headers=tenant.auth(),
            ).json()["secret"]
            for scope in ("ingest", "read", "compliance")
        }
        stored = http.post(
            "/v1/subjects/gen-links/artefacts?category=recording", content=b"0123456789",
            headers={"Authorization": f"Bearer {keys['ingest']}"},
        )  # fmt: skip
        assert stored.status_code == 201, stored.text
    base_url = server.base_url
    with client_module.AuthenticatedClient(base_url=base_url, token=keys["read"]) as c:
        link = mint.sync("gen-links", stored.json()["id"], client=c,
                         body=models.LinkRequest(expires_in=60))  # fmt: skip
        too_long = mint.sync_detailed(
            "gen-links", stored.json()["id"], client=c, body=models.LinkRequest(expires_in=3601)
        )
    assert isinstance(link, models.PlaybackLink), link
    assert too_long.status_code == 422
    with client_module.Client(base_url=base_url) as c:
        jwks = get_jwks.sync(client=c)
        played = c.get_httpx_client().get(urllib.parse.urlsplit(link.url).path)
    assert isinstance(jwks, models.JwkSet) and jwks.keys
    assert played.status_code == 200 and played.content == b"0123456789"
    with client_module.AuthenticatedClient(base_url=base_url, token=keys["compliance"]) as c:
        disclosure = record.sync(
            client=c,
            body=models.DisclosureRecord(
                recipient="Rechtbank", legal_basis="court order", reference="GEN-D1",
                categories=["recording"], subject_ref="gen-links",
                disclosed_at=datetime.now(UTC) - timedelta(minutes=10),
            ),
        )  # fmt: skip
        page = list_disclosures.sync(client=c, subject_ref="gen-links")
    assert isinstance(disclosure, models.Disclosure) and disclosure.subject_ref == "gen-links"
    assert page is not None and [d.id for d in page.items] == [disclosure.id]
    with client_module.AuthenticatedClient(base_url=base_url, token=tenant.admin_key) as c:
        # A public address literal: no DNS, and no private network to refuse.
        endpoint = create_webhook.sync(
            client=c,
            body=models.WebhookCreate(
                url="https://93.184.215.14/hook", events=[models.EventType.ERASURE_COMPLETED]
            ),
        )
        deleted = delete_webhook.sync_detailed(endpoint.id, client=c)
    assert isinstance(endpoint, models.WebhookCreated) and endpoint.secret.startswith("whsec_")
    assert deleted.status_code == 204
