"""The aws-kms root-key provider against moto's KMS in server mode on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from crypto.context import PURPOSE_DEPLOYMENT_SECRET, PURPOSE_TENANT_KEK, KeyContext
from crypto.errors import IntegrityError, KeyUnavailableError
from crypto.providers import provider_from_uri
from crypto.providers.aws_kms import AwsKmsProvider
from crypto.secrets import generate_key

CONTEXT = KeyContext(PURPOSE_TENANT_KEK, tenant_id="tenant-a", key_id="kek-1", version=1)
DUMMY_KEY_ID, DUMMY_SECRET = "testing", "testing"
# One attempt and short timeouts: a stopped server must fail fast, not retry for seconds.
FAIL_FAST = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})


def start_server() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def stop_server(server: ThreadedMotoServer) -> None:
    server.stop()
    # stop() leaves the listening socket open, where connections would hang; close it.
    if server._server is not None:
        server._server.server_close()


def kms_client(endpoint: str) -> Any:
    return boto3.client(
        "kms",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=FAIL_FAST,
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
    )


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server, url = start_server()
    try:
        yield url
    finally:
        stop_server(server)


@pytest.fixture
def kms(endpoint: str) -> tuple[Any, str]:
    client = kms_client(endpoint)
    return client, client.create_key(Description="datavault test root")["KeyMetadata"]["KeyId"]


def test_kms_wrap_round_trip(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    provider = AwsKmsProvider(key_id, client=client)
    key = generate_key()
    wrapped = provider.wrap(key, CONTEXT)
    assert wrapped[0] == 0xE1 and int.from_bytes(wrapped[1:5], "big") == 1
    assert provider.unwrap(wrapped, CONTEXT) == key
    assert provider.name == "aws-kms" and provider.epochs() == [1]


def test_kms_envelope_for_another_tenant_is_integrity_error(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    provider = AwsKmsProvider(key_id, client=client)
    wrapped = provider.wrap(generate_key(), CONTEXT)
    other = KeyContext(PURPOSE_TENANT_KEK, tenant_id="tenant-b", key_id="kek-1", version=1)
    with pytest.raises(IntegrityError):
        provider.unwrap(wrapped, other)


def test_kms_envelope_for_another_key_version_is_integrity_error(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    provider = AwsKmsProvider(key_id, client=client)
    wrapped = provider.wrap(generate_key(), CONTEXT)
    other = KeyContext(PURPOSE_TENANT_KEK, tenant_id="tenant-a", key_id="kek-1", version=2)
    with pytest.raises(IntegrityError):  # same tenant: the local layer's AAD catches it
        provider.unwrap(wrapped, other)


def test_tampered_kms_envelope_is_integrity_error(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    provider = AwsKmsProvider(key_id, client=client)
    wrapped = provider.wrap(generate_key(), CONTEXT)
    with pytest.raises(IntegrityError):
        provider.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), CONTEXT)
    with pytest.raises(IntegrityError):
        provider.unwrap(wrapped[:20], CONTEXT)


def test_deployment_secret_without_tenant_round_trips(kms: tuple[Any, str]) -> None:
    client, key_id = kms
    provider = AwsKmsProvider(key_id, client=client)
    context = KeyContext(PURPOSE_DEPLOYMENT_SECRET, key_id="receipt-signing", version=1)
    key = generate_key()
    assert provider.unwrap(provider.wrap(key, context), context) == key


def test_missing_kms_key_is_key_unavailable(kms: tuple[Any, str]) -> None:
    client, _ = kms
    provider = AwsKmsProvider("alias/datavault-missing", client=client)
    with pytest.raises(KeyUnavailableError, match="NotFoundException"):
        provider.wrap(generate_key(), CONTEXT)


def test_epochs_rotate_across_kms_keys(kms: tuple[Any, str]) -> None:
    client, old_key = kms
    new_key = client.create_key()["KeyMetadata"]["KeyId"]
    key = generate_key()
    wrapped_old = AwsKmsProvider(old_key, client=client).wrap(key, CONTEXT)
    rotated = AwsKmsProvider(new_key, client=client, epoch=2, older_epochs={1: old_key})
    wrapped_new = rotated.wrap(key, CONTEXT)
    assert int.from_bytes(wrapped_new[1:5], "big") == 2
    assert rotated.unwrap(wrapped_old, CONTEXT) == key == rotated.unwrap(wrapped_new, CONTEXT)
    retired = AwsKmsProvider(new_key, client=client, epoch=2)  # epoch 1 destroyed
    with pytest.raises(KeyUnavailableError, match="epoch 1"):
        retired.unwrap(wrapped_old, CONTEXT)


def test_stopped_kms_is_key_unavailable() -> None:
    server, url = start_server()
    client = kms_client(url)
    key_id = client.create_key()["KeyMetadata"]["KeyId"]
    provider = AwsKmsProvider(key_id, client=client)
    wrapped = provider.wrap(generate_key(), CONTEXT)
    stop_server(server)
    with pytest.raises(KeyUnavailableError, match="unreachable") as info:
        provider.unwrap(wrapped, CONTEXT)
    assert key_id not in str(info.value)
    with pytest.raises(KeyUnavailableError):
        provider.wrap(generate_key(), CONTEXT)


def test_provider_from_uri_uses_the_environment(
    kms: tuple[Any, str], endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key_id = kms
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    provider = provider_from_uri(f"aws-kms:{key_id}", tmp_path)
    key = generate_key()
    assert provider.unwrap(provider.wrap(key, CONTEXT), CONTEXT) == key
