"""Red team 16: the indexed router's bounded candidate cache (22532dd) attacked with ONE
router kept warm across paths, as in the server (red team 15's property tests build a
fresh router per path, so a cached list was never reused for another path of its key).

The key now folds every "/" count past the table's own into one, and past
MAX_CACHED_SHAPES shapes the lists are found without being kept: a list computed for one
path must still be right for every other path of its key, and a full cache must change
no answer. Held: the route (and path parameters) is the plain scan's for every path.
"""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, given, settings

from tests.unit.test_redteam15_router import (  # the red team 15 generator and scan
    API_TABLE,
    METHODS,
    NASTY,
    _requests,
    _scan,
)
from vault.http.dispatch import MAX_CACHED_SHAPES, IndexedRouter

WARM = IndexedRouter(API_TABLE)


def _same_as_scan(router: IndexedRouter, method: str, path: str, root_path: str) -> None:
    scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
    expected = _scan(API_TABLE, scope)
    found = router._full_match(dict(scope))
    if found is None:
        return  # Starlette's own scan answers it
    assert expected is not None, (method, path, root_path, found)
    assert found[0] is expected[0], (method, path, found[0], expected[0])
    assert found[1] == expected[1]


@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=_requests(API_TABLE))
def test_a_warm_router_picks_the_scans_route(request: tuple[str, str, str]) -> None:
    _same_as_scan(WARM, *request)


def test_past_the_cache_bound_and_the_slash_cap_every_answer_is_the_scans() -> None:
    router = IndexedRouter(API_TABLE)
    literals = sorted({part for route in API_TABLE for part in getattr(route, "path", "").split("/")
                       if part and "{" not in part})  # fmt: skip
    rng = random.Random(16)
    # Fill the cache with shapes built from the table's literals in orders no route has.
    for parts in itertools.product(literals, repeat=3):
        for depth in range(3):
            router.candidates("/" + "/".join([*parts, *["x"] * depth]))
        if len(router._candidates) >= MAX_CACHED_SHAPES:
            break
    assert len(router._candidates) == MAX_CACHED_SHAPES
    # Now real paths of every template, deep ones past the slash cap among them.
    templates = [route.path for route in API_TABLE if hasattr(route, "path")]
    for template in templates:
        for _ in range(20):
            path = "/".join(
                rng.choice(NASTY) if "{" in part else part for part in template.split("/")
            )
            if rng.random() < 0.3:
                path += "/a" * rng.choice((1, 2, 50, 3_000))
            _same_as_scan(router, rng.choice(METHODS), path, "")
    assert len(router._candidates) == MAX_CACHED_SHAPES
