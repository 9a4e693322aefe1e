"""Root keys in AWS KMS (or any KMS speaking its API).

Envelope (FORMAT.md, "KMS root envelope"):
0xE1 ‖ epoch (u32 BE) ‖ blob length (u16 BE) ‖ KMS ciphertext blob ‖ key wrap.

Each wrap asks KMS GenerateDataKey for a fresh 256-bit envelope key under the epoch's CMK
with EncryptionContext = {"tenant_id": …} (tenant id only: the encryption context shows in
CloudTrail, subject ids must not), then wraps the key locally under the envelope key with
the full KeyContext as associated data. KMS binds the tenant and gates every unwrap (audit,
revocation, key deletion); the local layer binds purpose, subject, category, generation,
key id and version. One KMS call per wrap and per unwrap.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from crypto.context import KeyContext
from crypto.errors import IntegrityError, KeyUnavailableError
from crypto.keywrap import unwrap_key, wrap_key
from crypto.limits import KEY_SIZE
from crypto.secrets import SecretBytes

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

KMS_ENVELOPE_V1: Final = 0xE1
_HEAD: Final = struct.Struct(">BIH")  # version, epoch, KMS blob length
_AUTHENTICITY_ERRORS: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
# KMS's shortest pending window: a key scheduled for deletion can still be cancelled
# for this long, in case an epoch was retired by mistake.
KMS_DELETION_WINDOW_DAYS: Final = 7
# Fail over quickly: a wrap runs inside a request, and the caller maps this to a 503.
_CLIENT_CONFIG: Final = Config(
    connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
)


class AwsKmsProvider:
    """``key_id`` (id, ARN or alias) is the CMK of the current ``epoch``; ``older_epochs``
    maps retired-but-not-destroyed epochs to their CMKs so their envelopes still open.

    Epochs the vault started itself (``add_epoch`` creates a new CMK) are recorded in the
    database and handed back with ``adopt_epochs``; destroying an epoch schedules its
    CMK's deletion in KMS and forgets it here."""

    name: str = "aws-kms"

    def __init__(
        self,
        key_id: str,
        client: KMSClient | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        *,
        epoch: int = 1,
        older_epochs: Mapping[int, str] | None = None,
    ) -> None:
        if not key_id:
            raise ValueError("aws-kms needs a key id, ARN or alias")
        self._keys = {**(older_epochs or {}), epoch: key_id}
        if max(self._keys) != epoch:
            raise ValueError("the current epoch must be the newest")
        self._epoch = epoch
        self._destroyed: set[int] = set()
        self._lock = threading.Lock()
        self._client: KMSClient = client or _make_client(region, endpoint_url)

    def current_epoch(self) -> int:
        return self._epoch

    def epochs(self) -> list[int]:
        return sorted(self._keys)

    def epoch_key_id(self, epoch: int) -> str | None:
        """The CMK of an epoch this provider can still use."""
        return self._keys.get(epoch)

    def adopt_epochs(self, keys: Mapping[int, str], destroyed: set[int]) -> None:
        """Take in the epochs the vault recorded (its database is the epoch list): new
        ones are added, the newest becomes current, destroyed ones are forgotten."""
        with self._lock:
            self._destroyed |= destroyed
            merged = {**self._keys, **keys}
            live = {e: k for e, k in merged.items() if e not in self._destroyed}
            if not live:
                raise ValueError("every configured root key epoch is destroyed")
            self._keys, self._epoch = live, max(live)

    def add_epoch(self) -> int:
        """Create a new CMK for a new epoch and make it current."""
        with self._lock:
            epoch = max([*self._keys, *self._destroyed]) + 1
            try:
                created = self._client.create_key(
                    Description=f"datavault root key, epoch {epoch}",
                    KeyUsage="ENCRYPT_DECRYPT",
                    KeySpec="SYMMETRIC_DEFAULT",
                )
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc, "CreateKey") from None
            self._keys[epoch] = created["KeyMetadata"]["KeyId"]
            self._epoch = epoch
        return epoch

    def destroy_epoch(self, epoch: int) -> None:
        """Schedule the epoch's CMK for deletion (the shortest window KMS allows) and stop
        using it. Idempotent; the current epoch cannot be destroyed."""
        with self._lock:
            if epoch == self._epoch:
                raise ValueError("the current root key epoch cannot be destroyed")
            key_id = self._keys.get(epoch)
            if key_id is not None:
                try:
                    self._client.schedule_key_deletion(
                        KeyId=key_id, PendingWindowInDays=KMS_DELETION_WINDOW_DAYS
                    )
                except ClientError as exc:
                    # Already pending deletion (a retry): the goal is reached.
                    if exc.response.get("Error", {}).get("Code") != "KMSInvalidStateException":
                        raise _translate(exc, "ScheduleKeyDeletion") from None
                except BotoCoreError as exc:
                    raise _translate(exc, "ScheduleKeyDeletion") from None
            self._keys.pop(epoch, None)
            self._destroyed.add(epoch)

    def wrap(self, key: SecretBytes, context: KeyContext) -> bytes:
        try:
            response = self._client.generate_data_key(
                KeyId=self._keys[self._epoch],
                KeySpec="AES_256",
                EncryptionContext=_encryption_context(context),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "GenerateDataKey") from None
        envelope_key = SecretBytes(response["Plaintext"])
        blob = response["CiphertextBlob"]
        inner = wrap_key(envelope_key, key, context)
        return _HEAD.pack(KMS_ENVELOPE_V1, self._epoch, len(blob)) + blob + inner

    def unwrap(self, wrapped: bytes, context: KeyContext) -> SecretBytes:
        if len(wrapped) < _HEAD.size or wrapped[0] != KMS_ENVELOPE_V1:
            raise IntegrityError()
        _, epoch, blob_len = _HEAD.unpack_from(wrapped)
        blob = wrapped[_HEAD.size : _HEAD.size + blob_len]
        if len(blob) != blob_len:
            raise IntegrityError()
        key_id = self._keys.get(epoch)
        if key_id is None:
            raise KeyUnavailableError(f"root key epoch {epoch} is destroyed or not configured")
        try:
            response = self._client.decrypt(
                CiphertextBlob=blob, KeyId=key_id, EncryptionContext=_encryption_context(context)
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, "Decrypt") from None
        envelope_key = SecretBytes(response["Plaintext"])
        if len(envelope_key) != KEY_SIZE:
            raise IntegrityError()
        return unwrap_key(envelope_key, wrapped[_HEAD.size + blob_len :], context)


def _make_client(region: str | None, endpoint_url: str | None) -> KMSClient:
    # boto3 reads AWS_DEFAULT_REGION but not AWS_REGION (which other AWS SDKs use), and
    # AWS_ENDPOINT_URL_KMS through its own configuration chain.
    region = region or os.environ.get("AWS_REGION") or None
    try:
        return boto3.client(
            "kms", region_name=region, endpoint_url=endpoint_url, config=_CLIENT_CONFIG
        )
    except NoRegionError:
        raise ValueError("aws-kms needs a region: set AWS_REGION or AWS_DEFAULT_REGION") from None


def _encryption_context(context: KeyContext) -> dict[str, str]:
    # KMS rejects empty values; deployment-wide secrets have no tenant.
    if context.tenant_id:
        return {"tenant_id": context.tenant_id}
    return {"datavault_scope": "deployment"}


def _translate(exc: ClientError | BotoCoreError, operation: str) -> Exception:
    """Vendor errors become ours; only the error code / class name is kept (no payload)."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        if code in _AUTHENTICITY_ERRORS:
            return IntegrityError()
        return KeyUnavailableError(f"KMS {operation} failed: {code}")
    return KeyUnavailableError(f"KMS {operation} unreachable: {type(exc).__name__}")
