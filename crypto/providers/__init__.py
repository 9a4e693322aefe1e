"""Root-key providers, chosen by configuration: ``file:<path>`` or ``aws-kms:<key>``."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from crypto.providers.base import RootKeyProvider
from crypto.providers.local import LocalKeyFileProvider

DEFAULT_KEY_FILE_NAME: Final = "root-key.json"

__all__ = [
    "DEFAULT_KEY_FILE_NAME",
    "LocalKeyFileProvider",
    "RootKeyProvider",
    "local_key_path",
    "provider_from_uri",
]


def provider_from_uri(uri: str, data_dir: Path) -> RootKeyProvider:
    """Build the root-key provider a setting names.

    - ``file:<path>``: a local key file, created on first use; a relative path is taken
      relative to ``data_dir``; ``file:`` alone means ``<data_dir>/root-key.json``.
    - ``aws-kms:<key id, ARN or alias>``: AWS KMS, epoch 1. For rotated epochs:
      ``aws-kms:1=<key>,2=<key>`` (the highest epoch is current). Region, credentials and
      endpoint come from boto3's usual chain (AWS_REGION, AWS_ENDPOINT_URL_KMS, …).
    """
    scheme, sep, rest = uri.partition(":")
    if not sep:
        raise ValueError(f"root key provider {uri!r} has no scheme: {_EXPECTED}")
    path = local_key_path(uri, data_dir)
    if path is not None:
        return LocalKeyFileProvider.open_or_create(path)
    if scheme == "aws-kms":
        # Imported here: boto3 is a third of a process's start-up, and only KMS needs it.
        from crypto.providers.aws_kms import AwsKmsProvider

        keys = _parse_kms_keys(rest)
        current = max(keys)
        older = {epoch: key for epoch, key in keys.items() if epoch != current}
        return AwsKmsProvider(keys[current], epoch=current, older_epochs=older)
    raise ValueError(f"unknown root key provider scheme {scheme!r}: {_EXPECTED}")


_EXPECTED: Final = "expected file:<path> or aws-kms:<key id or ARN>"


def local_key_path(uri: str, data_dir: Path) -> Path | None:
    """The key file a ``file:`` setting names (relative paths from ``data_dir``), or None
    for another provider. Nothing is opened or created."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme != "file":
        return None
    path = Path(rest) if rest else Path(DEFAULT_KEY_FILE_NAME)
    return path if path.is_absolute() else data_dir / path


def _parse_kms_keys(spec: str) -> dict[int, str]:
    if not spec:
        raise ValueError(f"aws-kms needs a key id or ARN: {_EXPECTED}")
    if "=" not in spec:
        return {1: spec}  # ARNs and aliases never contain '=' or ','
    keys: dict[int, str] = {}
    for item in spec.split(","):
        epoch, _, key = item.partition("=")
        if not epoch.isdigit() or int(epoch) < 1 or not key or int(epoch) in keys:
            raise ValueError(f"aws-kms epochs must look like 1=<key>,2=<key>; got {item!r}")
        keys[int(epoch)] = key
    return keys
