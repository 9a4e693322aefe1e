"""The blob-store interface. Stores hold only ciphertext (and signed ledger/chain heads)."""

from __future__ import annotations

from typing import Protocol


class BlobStoreError(Exception):
    """The store failed; adapters turn vendor errors into this."""


class BlobNotFound(BlobStoreError):
    """No object under that key."""


class BlobStore(Protocol):
    name: str

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def list_keys(self, prefix: str) -> list[str]: ...

    async def ping(self) -> bool: ...
