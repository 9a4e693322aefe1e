"""Red team (second outside review): the grace period can push an erasure past its legal
deadline. DESIGN.md allows a grace period of up to 29 days and requires completion within
30 days or one calendar month, whichever is sooner; a month after a day in February is 28
days (29 in a leap year). With the longest grace the tenant may set, an instruction given
in February is not even due to run (`not_before`) until after its `due_at`: it is overdue
by construction, by a setting the vault accepted. Nothing clamps `not_before` to the
deadline (ErasureService._request_once; the rate brake's 24 h likewise).

Steps: PATCH the tenant's `erasure_grace_hours` to 696 (29 days); an erasure requested on
1 February 2027. Observed: not_before 2 March, due_at 1 March.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.support import ServerThread, make_tenant
from vault.domain.subject_refs import normalize_ref
from vault.runtime import operator_context
from vault.services.erasures import ErasureRequest, ErasureService
from vault.services.subject_refs import SubjectRefHasher

LONGEST_GRACE_HOURS = 29 * 24


def _request_on(
    server: ServerThread, tenant_id: uuid.UUID, key_id: uuid.UUID, when: datetime
) -> Any:
    async def run() -> dict[str, Any]:
        async with operator_context(server.settings, server.database_url) as ctx:
            erasures = ErasureService(ctx.db, SubjectRefHasher(ctx.db, ctx.root))
            erasure, _ = await erasures.request(
                tenant_id, normalize_ref("february-customer"), ErasureRequest(None, None),
                key_id, now=when,
            )  # fmt: skip
            return erasure

    return asyncio.run(run())


def test_the_grace_period_never_pushes_an_erasure_past_its_deadline(
    quiet_vault: ServerThread,
) -> None:
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    with quiet_vault.client() as http:
        patched = http.patch(
            "/v1/tenant/settings",
            json={"erasure_grace_hours": LONGEST_GRACE_HOURS},
            headers=tenant.auth(),
        )
        assert patched.status_code == 200, patched.text
        admin_id = uuid.UUID(
            http.get("/v1/api-keys", headers=tenant.auth()).json()["items"][0]["id"]
        )
    erasure = _request_on(quiet_vault, tenant.id, admin_id, datetime(2027, 2, 1, 9, 0, tzinfo=UTC))
    assert erasure["not_before"] <= erasure["due_at"], (erasure["not_before"], erasure["due_at"])


def test_the_longest_grace_fits_a_thirty_day_deadline(quiet_vault: ServerThread) -> None:
    """The negative: asked for in a month followed by a long one, the grace fits."""
    tenant = make_tenant(quiet_vault.settings, quiet_vault.database_url)
    with quiet_vault.client() as http:
        http.patch(
            "/v1/tenant/settings",
            json={"erasure_grace_hours": LONGEST_GRACE_HOURS},
            headers=tenant.auth(),
        )
        admin_id = uuid.UUID(
            http.get("/v1/api-keys", headers=tenant.auth()).json()["items"][0]["id"]
        )
    erasure = _request_on(quiet_vault, tenant.id, admin_id, datetime(2027, 3, 1, 9, 0, tzinfo=UTC))
    assert erasure["not_before"] <= erasure["due_at"]
