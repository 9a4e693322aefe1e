"""The seam where legal holds plug into key destruction: the key ring cannot be built
without a HoldCheck, so no destroy path can skip asking one. (A subject's keys are
destroyed in one statement that asks the database's own check, dv_holds_covering, the
one PgHoldCheck asks too: migration 0033.)"""

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
