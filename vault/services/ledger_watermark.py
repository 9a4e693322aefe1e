"""The highest shred-ledger head this deployment has seen, kept by the local root-key
store: a small file beside the root key file (`<key file>.ledger-head`), outside the data
directory and its backups in production, as the key file is. One head per ledger (its
blob store's location), should one root key serve several stores.

Why: a restored old database remembers an old ledger head, so an operator (or an
attacker) who also removes the ledger's newer objects would leave nothing that notices
(the ledger then ends exactly where the old database expects it). The root-key store is
not restored with the database; it keeps the highest head any process published, and
start-up refuses a ledger that does not reach it. With aws-kms there is no local store:
there an S3 bucket with Object Lock prevents the cut (DESIGN.md).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto.providers.base import RootKeyProvider
from crypto.providers.local import LocalKeyFileProvider
from vault.blobs.base import BlobStore

SUFFIX = ".ledger-head"


@dataclass(frozen=True)
class LedgerHead:
    seq: int
    hash: bytes


class LedgerWatermark:
    def __init__(self, path: Path, ledger: str) -> None:
        """`ledger`: the location of the blob store that holds the ledger."""
        self.path = path
        self.ledger = ledger

    def _document(self) -> dict[str, Any]:
        try:
            document: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {"ledgers": {}}
        return document

    def highest(self) -> LedgerHead | None:
        head = self._document()["ledgers"].get(self.ledger)
        if head is None:
            return None
        return LedgerHead(int(head["seq"]), bytes.fromhex(head["hash"]))

    def remember(self, head: LedgerHead) -> None:
        """Keep `head` if it is beyond the one kept (never moves back). Atomic: written
        to a temporary file, fsynced and renamed, under a lock shared by every process."""
        with self.path.with_name(self.path.name + ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            kept = self.highest()
            if kept is not None and kept.seq >= head.seq:
                return
            document = self._document()
            document["ledgers"][self.ledger] = {"seq": head.seq, "hash": head.hash.hex()}
            temporary = self.path.with_name(self.path.name + ".tmp")
            data = json.dumps(document, sort_keys=True).encode()
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


def watermark_for(root: RootKeyProvider, blobs: BlobStore) -> LedgerWatermark | None:
    """The watermark beside a local root key file for the ledger in `blobs`; None for a
    root key in KMS."""
    if isinstance(root, LocalKeyFileProvider):
        return LedgerWatermark(root.path.with_name(root.path.name + SUFFIX), blobs.location)
    return None
