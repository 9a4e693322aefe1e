"""Root keys in a local JSON key file (mode 0600): for trying datavault out.

Envelope (FORMAT.md, "Local root envelope"): 0xD1 ‖ epoch (u32 BE) ‖ key wrap under the
epoch's root key. A backup that holds both this file and the database can undo every
shred, so production keeps the file outside the data directory, or uses aws-kms.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
import stat
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from crypto import _primitives
from crypto.context import KeyContext
from crypto.errors import IntegrityError, KeyUnavailableError
from crypto.keywrap import unwrap_key, wrap_key
from crypto.limits import KEY_SIZE
from crypto.secrets import SecretBytes, generate_key

LOCAL_ENVELOPE_V1: Final = 0xD1
KEY_FILE_FORMAT: Final = "datavault-root-key"
KEY_FILE_VERSION: Final = 1
_EPOCH: Final = struct.Struct(">I")
_FILE_MODE: Final = 0o600

logger = logging.getLogger("datavault.crypto")


class LocalKeyFileProvider:
    name: str = "local"

    def __init__(self, path: Path) -> None:
        """Use an existing key file (loaded once here to fail early); prefer
        ``open_or_create``. Every operation re-reads the file (a few hundred bytes; root
        operations are rare, callers cache KEKs), so an epoch added or destroyed by another
        process takes effect here at once: no process keeps wrapping under a root key that
        rotation is about to destroy, or keeps a destroyed one."""
        self._path = path
        self._lock = threading.Lock()  # read-modify-write: threads here, flock across processes
        _load(path)

    @property
    def path(self) -> Path:
        """The key file (its directory also holds the ledger watermark beside it)."""
        return self._path

    @classmethod
    def open_or_create(cls, path: Path) -> LocalKeyFileProvider:
        """Open the key file, creating it with one fresh epoch if it does not exist."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                _write_atomically(path, _render({1: generate_key()}, 1, set()), exclusive=True)
            except FileExistsError:
                pass  # another process created it first; use theirs
            else:
                logger.warning(
                    "ROOT KEY CREATED at %s: losing this file loses every tenant's data; "
                    "keep it out of the data directory's backups (a backup holding both "
                    "undoes every shred), or use aws-kms in production",
                    path,
                )
        return cls(path)

    def current_epoch(self) -> int:
        return _load(self._path)[1]

    def epochs(self) -> list[int]:
        return sorted(_load(self._path)[0])

    def wrap(self, key: SecretBytes, context: KeyContext) -> bytes:
        keys, current, _ = _load(self._path)
        return (
            bytes([LOCAL_ENVELOPE_V1])
            + _EPOCH.pack(current)
            + wrap_key(keys[current], key, context)
        )

    def unwrap(self, wrapped: bytes, context: KeyContext) -> SecretBytes:
        if len(wrapped) < 1 + _EPOCH.size or wrapped[0] != LOCAL_ENVELOPE_V1:
            raise IntegrityError()
        (epoch,) = _EPOCH.unpack_from(wrapped, 1)
        keys, _, destroyed = _load(self._path)
        root = keys.get(epoch)
        if root is None:
            if epoch == 0 or epoch > max([*keys, *destroyed]):
                # Never issued (epochs count from 1, each one above the last): the epoch
                # field was altered, which is an altered byte like any other (FORMAT.md),
                # not a key service that is down (red team 19, finding 6).
                raise IntegrityError()
            raise KeyUnavailableError(f"root key epoch {epoch} is destroyed")
        return unwrap_key(root, wrapped[1 + _EPOCH.size :], context)

    def add_epoch(self) -> int:
        """Start a new epoch (a new random root key) and make it current."""
        with self._lock, _dir_lock(self._path):
            keys, _, destroyed = _load(self._path)
            epoch = max([*keys, *destroyed]) + 1
            keys[epoch] = generate_key()
            _write_atomically(self._path, _render(keys, epoch, destroyed), exclusive=False)
        return epoch

    def destroy_epoch(self, epoch: int) -> None:
        """Remove an old epoch's root key from the file; everything wrapped under it becomes
        unreadable. The current epoch cannot be destroyed. Idempotent."""
        with self._lock, _dir_lock(self._path):
            keys, current, destroyed = _load(self._path)
            if epoch == current:
                raise ValueError("the current root key epoch cannot be destroyed")
            if keys.pop(epoch, None) is None:
                return
            _write_atomically(
                self._path, _render(keys, current, destroyed | {epoch}), exclusive=False
            )


def _load(path: Path) -> tuple[dict[int, SecretBytes], int, set[int]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise KeyUnavailableError(f"cannot open root key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise KeyUnavailableError(
                f"root key file {path} is readable or writable by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); refusing to use it: run `chmod 600 {path}`"
            )
        raw = handle.read()
    try:
        doc = json.loads(raw)
        return _parse(doc)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise KeyUnavailableError(f"{path} is not a valid datavault root key file") from None


def _parse(doc: Any) -> tuple[dict[int, SecretBytes], int, set[int]]:
    if doc["format"] != KEY_FILE_FORMAT or doc["v"] != KEY_FILE_VERSION:
        raise ValueError("unsupported key file format")
    keys = {
        int(n): SecretBytes(base64.b64decode(k, validate=True)) for n, k in doc["epochs"].items()
    }
    current = doc["current"]
    destroyed = {int(n) for n in doc.get("destroyed", [])}
    if (
        type(current) is not int
        or current not in keys
        or any(len(k) != KEY_SIZE for k in keys.values())
    ):
        raise ValueError("inconsistent key file")
    return keys, current, destroyed


def _render(keys: dict[int, SecretBytes], current: int, destroyed: set[int]) -> bytes:
    doc = {
        "format": KEY_FILE_FORMAT,
        "v": KEY_FILE_VERSION,
        "epochs": {str(n): base64.b64encode(k.reveal()).decode() for n, k in sorted(keys.items())},
        "current": current,
        "destroyed": sorted(destroyed),
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


@contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    # The file itself is replaced by rename, so the lock lives on its directory.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomically(path: Path, content: bytes, *, exclusive: bool) -> None:
    """Write via a 0600 temp file in the same directory, then rename (or link, when the
    file must not exist yet), so a crash never leaves a half-written key file."""
    tmp = path.with_name(f".{path.name}.{_primitives.random_bytes(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
    try:
        try:
            os.fchmod(fd, _FILE_MODE)  # explicit, whatever the umask
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)  # FileExistsError if another process won the race
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
