"""The highest shred-ledger head this deployment has seen, kept by the local root-key
store: a small file beside the root key file (`<key file>.ledger-head`), outside the data
directory and its backups in production, as the key file is.

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

from crypto.providers.base import RootKeyProvider
from crypto.providers.local import LocalKeyFileProvider

SUFFIX = ".ledger-head"


@dataclass(frozen=True)
class LedgerHead:
    seq: int
    hash: bytes


class LedgerWatermark:
    def __init__(self, path: Path) -> None:
        self.path = path

    def highest(self) -> LedgerHead | None:
        try:
            document = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        return LedgerHead(int(document["seq"]), bytes.fromhex(document["hash"]))

    def remember(self, head: LedgerHead) -> None:
        """Keep `head` if it is beyond the one kept (never moves back). Atomic: written
        to a temporary file, fsynced and renamed, under a lock shared by every process."""
        with self.path.with_name(self.path.name + ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            kept = self.highest()
            if kept is not None and kept.seq >= head.seq:
                return
            temporary = self.path.with_name(self.path.name + ".tmp")
            data = json.dumps({"seq": head.seq, "hash": head.hash.hex()}).encode()
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


def watermark_for(root: RootKeyProvider) -> LedgerWatermark | None:
    """The watermark beside a local root key file; None for a root key in KMS."""
    if isinstance(root, LocalKeyFileProvider):
        return LedgerWatermark(root.path.with_name(root.path.name + SUFFIX))
    return None
