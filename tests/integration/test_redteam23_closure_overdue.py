"""Red team 23: `closures_overdue` (deletion_check.sql, red team 22 finding 2) and the holds
it lets silence it.

The query reports a tenant still `closing` past its due date and the grace unless some hold
of the tenant was in force at (now - grace). It asks whether a hold exists, not whether a
hold keeps anything: a hold naming a subject reference the tenant never wrote (or a
category nothing is in) keeps no key, so the closure pass would close the tenant at once,
yet while that hold stands a closure that never ran (every pass deferred by a lock cycle)
is reported by nothing. And `dv_hold_in_force` does not look at `created_at`: a hold placed
a minute ago counts as in force "grace ago", so placing one silences an overdue closure at
once. Finding (strict xfail): an overdue closure with a hold that keeps nothing.

What held: a hold that keeps live keys does silence it (the closure rightly keeps them); a
hold released within the grace keeps it silent until the grace has passed since the
release (released_at is compared with now - grace); a cancelled closure is never reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.api.helpers import create_key, put_record
from tests.support import ServerThread, Tenant, module_private_server
from workers.deletion_check import DEFAULT_GRACE, find_deletion_violations

# A vault of this module's own: its closing tenants, past due on purpose, stay out of
# other modules' closure passes and deletion checks.
server = module_private_server("rt23-closure-overdue")


def _overdue(server: ServerThread, tenant: Tenant, at: datetime) -> list[str]:
    violations = asyncio.run(find_deletion_violations(server.database_url, now=at))
    return [v.kind for v in violations if v.tenant_id == tenant.id]


def _close(server: ServerThread, tenant: Tenant) -> datetime:
    with server.client() as http:
        requested = http.post(
            "/v1/tenant/closure", json={"reason": "red team 23"}, headers=tenant.auth()
        )
        assert requested.status_code == 202, requested.text
    return datetime.fromisoformat(requested.json()["closure_due_at"].replace("Z", "+00:00"))


def _hold(server: ServerThread, tenant: Tenant, **fields: object) -> dict[str, object]:
    with server.client() as http:
        officer = create_key(http, tenant, ["compliance"], owner="rt23 officer")
        placed = http.post(
            "/v1/holds",
            json={"reason": "litigation", "reference": "RT23", **fields},
            headers={"Authorization": f"Bearer {officer['secret']}"},
        )
        assert placed.status_code == 201, placed.text
        return dict(placed.json())


def test_an_overdue_closure_is_reported_despite_a_hold_that_keeps_nothing(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    tenant = new_tenant()
    with server.client() as http:
        key = create_key(http, tenant, ["ingest"])
        assert put_record(http, key, "rt23-kept-nowhere", "a", b'{"a": 1}').status_code in (
            200,
            201,
        )
    due = _close(server, tenant)
    # A hold on a reference the tenant never wrote: no key of the tenant is covered.
    _hold(server, tenant, subject_ref="rt23-nobody-ever")
    later = max(due, datetime.now(UTC)) + DEFAULT_GRACE + timedelta(days=1)
    assert _overdue(server, tenant, later) == ["closure_overdue"]


def test_held_a_hold_keeping_live_data_is_no_overdue_closure(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    tenant = new_tenant()
    with server.client() as http:
        key = create_key(http, tenant, ["ingest"])
        assert put_record(http, key, "rt23-kept", "a", b'{"a": 1}').status_code in (200, 201)
    due = _close(server, tenant)
    _hold(server, tenant, subject_ref="rt23-kept")
    later = max(due, datetime.now(UTC)) + DEFAULT_GRACE + timedelta(days=1)
    assert _overdue(server, tenant, later) == []


def test_held_a_cancelled_closure_is_never_overdue(
    server: ServerThread, new_tenant: Callable[[], Tenant]
) -> None:
    tenant = new_tenant()
    due = _close(server, tenant)
    with server.client() as http:
        assert http.delete("/v1/tenant/closure", headers=tenant.auth()).status_code in (200, 204)
    later = max(due, datetime.now(UTC)) + DEFAULT_GRACE + timedelta(days=1)
    assert _overdue(server, tenant, later) == []
