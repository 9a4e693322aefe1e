"""The root-key provider interface: the top of the key hierarchy, behind one small seam."""

from __future__ import annotations

from typing import Protocol

from crypto.context import KeyContext
from crypto.secrets import SecretBytes


class RootKeyProvider(Protocol):
    """Wraps tenant KEKs and deployment secrets under the root key of an epoch.

    Methods are synchronous (a KMS call blocks): async callers run them in a thread.
    ``wrap`` always uses the current epoch and records it in its output, so ``unwrap``
    picks the right root key after rotation. Failures: IntegrityError for an altered
    envelope or wrong context, KeyUnavailableError when the root key cannot be used.
    """

    name: str

    def current_epoch(self) -> int: ...

    def epochs(self) -> list[int]: ...

    def wrap(self, key: SecretBytes, context: KeyContext) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: KeyContext) -> SecretBytes: ...
