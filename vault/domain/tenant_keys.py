"""Which tenants hold keys: the rule, written once.

DESIGN.md: tenant closure destroys the tenant KEK and HMAC key once no hold keeps
anything, and a closed tenant keeps no live KEK. Nothing may give it one again: not a
new root-key epoch, not the epoch schedule, not `keys rotate` (a new random KEK opens
nothing old, but `datavault check deletion` would report the closed tenant's live KEK
for good). A closing tenant still holds keys (what holds keep), so it rotates.
"""

from __future__ import annotations

CLOSED = "closed"


def holds_keys(status: str) -> bool:
    """Whether a tenant in this status has KEKs to rotate."""
    return status != CLOSED
