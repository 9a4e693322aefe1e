"""In-memory cache of unwrapped tenant KEKs, bounded in time.

DESIGN.md: a KEK is cached at most 60 s, so a destroyed or rotated-away version leaves
every process within a minute even if nothing tells it; rotation in this process drops
it at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from crypto.secrets import SecretBytes

KEK_CACHE_SECONDS = 60.0


class KekCache:
    def __init__(
        self, ttl: float = KEK_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[uuid.UUID, int], tuple[SecretBytes, float]] = {}

    def get(self, tenant_id: uuid.UUID, version: int) -> SecretBytes | None:
        entry = self._entries.get((tenant_id, version))
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[(tenant_id, version)]
            return None
        return entry[0]

    def put(self, tenant_id: uuid.UUID, version: int, kek: SecretBytes) -> None:
        self._entries[(tenant_id, version)] = (kek, self._clock() + self._ttl)

    def drop(self, tenant_id: uuid.UUID, versions: list[int] | None = None) -> None:
        for key in [k for k in self._entries if k[0] == tenant_id]:
            if versions is None or key[1] in versions:
                del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
