"""Blob store on the local filesystem (the embedded default, inside the data directory).

Writes go to a temporary name in the same directory, are fsynced, then renamed: a crash
never leaves a half object under a real key.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path

from vault.blobs.base import BlobNotFound, BlobStoreError

# Keys are paths of safe segments: no '..', no absolute paths, nothing outside the root.
_KEY = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")
_TEMP_SUFFIX = ".partial"


class FilesystemBlobStore:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/") or key.endswith(_TEMP_SUFFIX):
            raise BlobStoreError("invalid blob key")
        return self._root / key

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self._path(key), data)

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{_TEMP_SUFFIX}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise BlobStoreError("filesystem blob store write failed") from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound("no such blob") from None
        except OSError as exc:
            raise BlobStoreError("filesystem blob store read failed") from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def list_keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            found = []
            for path in self._root.rglob("*"):
                if path.is_file() and not path.name.endswith(_TEMP_SUFFIX):
                    key = path.relative_to(self._root).as_posix()
                    if key.startswith(prefix):
                        found.append(key)
            return sorted(found)

        return await asyncio.to_thread(walk)

    async def ping(self) -> bool:
        return await asyncio.to_thread(
            lambda: self._root.is_dir() and os.access(self._root, os.W_OK)
        )
