"""The seam where legal holds plug into key destruction.

Until the holds feature exists, nothing is held. The erasure/holds work replaces
NoHolds with a PostgreSQL-backed check; every destroy path already asks through here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from vault.db.database import Connection


class HoldCheck(Protocol):
    async def holds_covering(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        categories: Sequence[str],
    ) -> dict[str, list[uuid.UUID]]:
        """For each category a hold covers now, the ids of those holds."""


class NoHolds:
    async def holds_covering(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        subject_id: uuid.UUID,
        categories: Sequence[str],
    ) -> dict[str, list[uuid.UUID]]:
        return {}
