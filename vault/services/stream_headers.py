"""Recently read stream headers, so a player seeking through one artefact reads only the
segments it asks for (issue 19: a range read used to read the header first, a thread
hop and a file open of its own).

A header is not secret (it sits in the blob beside the ciphertext: key id, segment size,
salt, nonce prefix, key commitment) and is not trusted from here either: the commitment
is checked against the data key before any segment opens, and every segment
authenticates the header as associated data, so a stale or wrong entry fails as an
integrity error, never as other plaintext. Entries are keyed by blob key, which names
the artefact and its data key.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

# ~130 bytes each: a few hundred KiB at most per process.
MAX_CACHED_HEADERS: Final = 4096


class StreamHeaderCache:
    def __init__(self, max_entries: int = MAX_CACHED_HEADERS) -> None:
        self._max = max_entries
        self._headers: OrderedDict[str, bytes] = OrderedDict()

    def get(self, blob_key: str) -> bytes | None:
        header = self._headers.get(blob_key)
        if header is not None:
            self._headers.move_to_end(blob_key)
        return header

    def put(self, blob_key: str, header: bytes) -> None:
        self._headers[blob_key] = header
        self._headers.move_to_end(blob_key)
        while len(self._headers) > self._max:
            self._headers.popitem(last=False)

    def forget(self, blob_key: str) -> None:
        self._headers.pop(blob_key, None)
