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
        self.evict_expired()
        entry = self._entries.get((tenant_id, version))
        return entry[0] if entry is not None else None

    def put(self, tenant_id: uuid.UUID, version: int, kek: SecretBytes) -> None:
        self.evict_expired()
        self._entries[(tenant_id, version)] = (kek, self._clock() + self._ttl)

    def __len__(self) -> int:
        return len(self._entries)

    def evict_expired(self) -> None:
        # Every expired entry, not only the one asked for: a closed tenant's KEK must
        # not linger in memory because nobody asks for it again.
        now = self._clock()
        for key in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]

    def drop(self, tenant_id: uuid.UUID, versions: list[int] | None = None) -> None:
        for key in [k for k in self._entries if k[0] == tenant_id]:
            if versions is None or key[1] in versions:
                del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
