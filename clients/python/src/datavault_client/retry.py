"""When the client tries a request again, and how long it waits first.

A request is tried again only where doing it twice is safe:

- a read (GET, HEAD), a delete of one thing, or a create that carries an Idempotency-Key
  (the vault answers a repeat with the first answer): after a connection error, a
  timeout, or an answer 429 or 503;
- any request whose connection could not even be opened (nothing reached the vault).

Everything else (cancel an erasure, release a hold, restrict a subject, change settings)
is sent once: a lost answer there is for the caller to look into, not to guess.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

# The answers that say "not now": the auth throttle's 429 and an unavailable database,
# blob store or key service (503, with Retry-After).
RETRY_STATUSES: Final = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts`: tries in all (1 = never again). Waits grow exponentially from
    `base_delay` to at most `max_delay` seconds, with full jitter so that many clients
    that failed together do not return together. A `Retry-After` from the vault is
    followed when it asks for at most `max_retry_after` seconds; a longer one (the auth
    throttle's 60 s) is raised to the caller at once instead of blocking it."""

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret

    def wait_for(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before the next try, or None when there is to be none."""
        if attempt >= self.attempts:
            return None
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_retry_after:
            return None
        return max(retry_after, 0.0)


NO_RETRIES: Final = RetryPolicy(attempts=1)
