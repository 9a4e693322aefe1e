"""The local key-file root-key provider and provider selection by URI."""

from __future__ import annotations

import json
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from crypto.context import PURPOSE_DEPLOYMENT_SECRET, PURPOSE_TENANT_KEK, KeyContext
from crypto.errors import IntegrityError, KeyUnavailableError
from crypto.providers import (
    LocalKeyFileProvider,
    RootKeyProvider,
    provider_from_uri,
)
from crypto.providers.aws_kms import AwsKmsProvider
from crypto.secrets import SecretBytes, generate_key

CONTEXT = KeyContext(PURPOSE_TENANT_KEK, tenant_id="tenant-a", key_id="kek-1", version=1)
VECTORS = json.loads((Path(__file__).parent / "vectors" / "local.json").read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_file_is_created_0600_with_a_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys" / "root-key.json"
    old_umask = os.umask(0)  # the most permissive umask must not widen the file
    try:
        with caplog.at_level(logging.WARNING, logger="datavault.crypto"):
            provider = LocalKeyFileProvider.open_or_create(path)
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "ROOT KEY CREATED" in caplog.text and str(path) in caplog.text
    doc = json.loads(path.read_text())
    assert doc["format"] == "datavault-root-key" and doc["v"] == 1 and doc["current"] == 1
    assert provider.epochs() == [1] and provider.current_epoch() == 1
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_existing_key_file_is_reused_without_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "root-key.json"
    key = generate_key()
    wrapped = LocalKeyFileProvider.open_or_create(path).wrap(key, CONTEXT)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="datavault.crypto"):
        again = LocalKeyFileProvider.open_or_create(path)
    assert caplog.records == []
    assert again.unwrap(wrapped, CONTEXT) == key


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_group_or_world_accessible_key_file_is_refused(tmp_path: Path, bad_mode: int) -> None:
    path = tmp_path / "root-key.json"
    LocalKeyFileProvider.open_or_create(path)
    path.chmod(bad_mode)
    with pytest.raises(KeyUnavailableError, match="chmod 600"):
        LocalKeyFileProvider.open_or_create(path)


def test_corrupt_key_file_is_key_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "root-key.json"
    path.write_text('{"format": "something-else"}')
    path.chmod(0o600)
    with pytest.raises(KeyUnavailableError, match="not a valid"):
        LocalKeyFileProvider.open_or_create(path)


def test_local_wrap_round_trip_and_context_binding(tmp_path: Path) -> None:
    provider: RootKeyProvider = LocalKeyFileProvider.open_or_create(tmp_path / "k.json")
    key = generate_key()
    wrapped = provider.wrap(key, CONTEXT)
    assert wrapped[0] == 0xD1 and int.from_bytes(wrapped[1:5], "big") == 1
    assert provider.unwrap(wrapped, CONTEXT) == key
    other = KeyContext(PURPOSE_TENANT_KEK, tenant_id="tenant-b", key_id="kek-1", version=1)
    with pytest.raises(IntegrityError):
        provider.unwrap(wrapped, other)
    with pytest.raises(IntegrityError):
        provider.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), CONTEXT)
    with pytest.raises(IntegrityError):
        provider.unwrap(b"\xd1\x00", CONTEXT)


def test_add_epoch_makes_it_current_and_old_envelopes_still_open(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    provider = LocalKeyFileProvider.open_or_create(path)
    key = generate_key()
    old = provider.wrap(key, CONTEXT)
    assert provider.add_epoch() == 2
    assert provider.current_epoch() == 2 and provider.epochs() == [1, 2]
    new = provider.wrap(key, CONTEXT)
    assert int.from_bytes(new[1:5], "big") == 2
    assert provider.unwrap(old, CONTEXT) == key == provider.unwrap(new, CONTEXT)
    assert mode(path) == 0o600


def test_destroyed_epoch_makes_its_envelopes_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    provider = LocalKeyFileProvider.open_or_create(path)
    old = provider.wrap(generate_key(), CONTEXT)
    provider.add_epoch()
    provider.destroy_epoch(1)
    provider.destroy_epoch(1)  # idempotent
    assert provider.epochs() == [2]
    with pytest.raises(KeyUnavailableError, match="epoch 1"):
        provider.unwrap(old, CONTEXT)
    reopened = LocalKeyFileProvider.open_or_create(path)
    with pytest.raises(KeyUnavailableError):
        reopened.unwrap(old, CONTEXT)
    assert reopened.add_epoch() == 3  # a destroyed epoch number is never reused
    assert json.loads(path.read_text())["destroyed"] == [1]
    assert mode(path) == 0o600


def test_current_epoch_cannot_be_destroyed(tmp_path: Path) -> None:
    provider = LocalKeyFileProvider.open_or_create(tmp_path / "k.json")
    with pytest.raises(ValueError, match="current"):
        provider.destroy_epoch(1)


def test_epoch_added_by_another_process_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    reader = LocalKeyFileProvider.open_or_create(path)
    writer = LocalKeyFileProvider.open_or_create(path)
    writer.add_epoch()
    key = generate_key()
    assert reader.unwrap(writer.wrap(key, CONTEXT), CONTEXT) == key


@pytest.mark.parametrize("vector", VECTORS)
def test_local_envelope_vector_still_opens(tmp_path: Path, vector: dict[str, Any]) -> None:
    path = tmp_path / "k.json"
    path.write_text(json.dumps(vector["key_file"]))
    path.chmod(0o600)
    provider = LocalKeyFileProvider.open_or_create(path)
    context = KeyContext(**vector["context"])
    key = provider.unwrap(bytes.fromhex(vector["envelope"]), context)
    assert key == SecretBytes(bytes.fromhex(vector["key"]))
    assert provider.current_epoch() == 2


def test_file_uri_is_relative_to_the_data_dir(tmp_path: Path) -> None:
    provider = provider_from_uri("file:secrets/root.json", tmp_path)
    assert provider.name == "local"
    assert (tmp_path / "secrets" / "root.json").exists()
    provider_from_uri("file:", tmp_path)
    assert (tmp_path / "root-key.json").exists()
    absolute = tmp_path / "elsewhere" / "root.json"
    provider_from_uri(f"file:{absolute}", tmp_path / "data")
    assert absolute.exists()


def test_aws_kms_uri_parses_key_and_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    single = provider_from_uri(f"aws-kms:{arn}", tmp_path)
    assert isinstance(single, AwsKmsProvider) and single.epochs() == [1]
    rotated = provider_from_uri("aws-kms:1=alias/old,3=alias/new", tmp_path)
    assert rotated.epochs() == [1, 3] and rotated.current_epoch() == 3


@pytest.mark.parametrize(
    "uri", ["vault:x", "s3:bucket", "no-scheme", "aws-kms:", "aws-kms:x=k", "aws-kms:1=a,1=b"]
)
def test_unknown_or_malformed_provider_uri_is_value_error(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ValueError, match=r"expected|epochs"):
        provider_from_uri(uri, tmp_path)


def test_deployment_secret_can_be_wrapped_by_the_root(tmp_path: Path) -> None:
    provider = LocalKeyFileProvider.open_or_create(tmp_path / "k.json")
    context = KeyContext(PURPOSE_DEPLOYMENT_SECRET, key_id="receipt-signing", version=1)
    key = generate_key()
    assert provider.unwrap(provider.wrap(key, context), context) == key


def test_epoch_destroyed_by_another_process_is_gone_here_at_once(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    first = LocalKeyFileProvider.open_or_create(path)
    old = first.wrap(generate_key(), CONTEXT)
    second = LocalKeyFileProvider.open_or_create(path)
    second.add_epoch()
    assert first.current_epoch() == 2  # new wraps here go to the new epoch at once
    second.destroy_epoch(1)
    with pytest.raises(KeyUnavailableError):
        first.unwrap(old, CONTEXT)


def test_concurrent_epoch_additions_are_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    providers = [LocalKeyFileProvider.open_or_create(path) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        added = list(pool.map(lambda i: providers[i % 2].add_epoch(), range(10)))
    assert sorted(added) == list(range(2, 12))
    assert providers[0].epochs() == list(range(1, 12))


def test_deleted_key_file_is_key_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    provider = LocalKeyFileProvider.open_or_create(path)
    wrapped = provider.wrap(generate_key(), CONTEXT)
    path.unlink()
    with pytest.raises(KeyUnavailableError, match="cannot open"):
        provider.unwrap(wrapped, CONTEXT)
