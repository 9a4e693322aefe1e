"""The dashboard: open erasures (overdue first), active and soon-expiring holds, and what
is held per category: each part only for a key that may see it, and never a claim about
what the key cannot see (an admin key is not told "nothing is held")."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vault.console.auth import signed_in
from vault.console.sections import ERASURES, HOLDS, may_open
from vault.console.state import console_state
from vault.console.views import OPEN_STATUSES, erasure_view, hold_view
from vault.console.web import console_page, page
from vault.http.state import vault_state
from vault.services.access_audit import SEARCH_MAX_LIMIT

# The dashboard shows at most this many of each list; the list pages page through all.
DASHBOARD_LIMIT = SEARCH_MAX_LIMIT


@console_page
async def dashboard(request: Request) -> Response:
    session = await signed_in(request)
    state = vault_state(request)
    tenant_id = session.principal.tenant_id
    now = console_state(request).sessions.clock()
    context: dict[str, Any] = {"now": now, "erasures": None, "holds": None}
    scopes = session.principal.scopes
    if may_open(scopes, ERASURES):
        erasures: list[dict[str, Any]] = []
        for status in OPEN_STATUSES:
            rows = await state.erasures.list(tenant_id, status, None, DASHBOARD_LIMIT)
            erasures.extend(erasure_view(e, now) for e in rows)
        erasures.sort(key=lambda e: (not e["overdue"], e["due_at"]))
        by_status = Counter(e["status"] for e in erasures)
        held_categories = Counter(h["category"] for e in erasures for h in e["held"])
        retained_categories = Counter(r["category"] for e in erasures for r in e["retained"])
        context.update(
            erasures=erasures, by_status=by_status, held_categories=held_categories,
            retained_categories=retained_categories,
        )  # fmt: skip
    if may_open(scopes, HOLDS):
        holds = [
            hold_view(h, now)
            for h in await state.holds.list(
                tenant_id, active=True, subject_ref_hash=None, after=None, limit=DASHBOARD_LIMIT
            )
        ]
        per_category: Counter[str] = Counter()
        for hold in holds:
            for category in hold["categories"] or ["*"]:
                per_category[category] += 1
        context.update(
            holds=holds,
            expiring=[h for h in holds if h["expiring_soon"]],
            holds_per_category=per_category,
        )
    categories: set[str] = set()
    for counts in ("holds_per_category", "held_categories", "retained_categories"):
        categories.update(context.get(counts) or ())
    context["categories"] = sorted(categories)
    return page(request, "dashboard.html", context)
