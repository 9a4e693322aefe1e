"""Red team 15: the indexed router (vault/http/dispatch.py) attacked with paths built from
the vault's own tables (API, console, ops) and mutated at the edges: empty segments,
trailing slashes, decoded %2F / %0A / %0D, dot segments, unicode look-alikes, long paths,
a proxy prefix (root_path), the console's `{rest:path}` route, HEAD vs GET, methods no
route allows.

Held (kept as regression tests): for every path and method generated, the route the
indexed router answers from (and the path parameters it hands the handler) is the one a
plain Starlette Router's full scan picks first, and where the scan has no full match the
indexed router answers nothing itself (the scan then answers the 404/405/redirect; it
also takes every path holding a newline).

Found: the candidate cache is keyed by the path's "/" count, which the client chooses, so
its size is bounded by the request-target limit (8 KiB: ~8,000 counts) times the literal
combinations (~18,000), not by the route table: a client grows it by one entry (~300
bytes) per request with a path of a new shape, and nothing ever evicts an entry.
Fixed: a count past every route's own is one key, and at most MAX_CACHED_SHAPES shapes
are kept.
"""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Match, Route

from vault.api_routes import ROUTES
from vault.app import OPS_ROUTES
from vault.console.routes import ROUTES as CONSOLE_ROUTES
from vault.http.dispatch import IndexedRouter
from vault.http.edge_limits import MAX_REQUEST_TARGET_BYTES

API_TABLE: list[BaseRoute] = [*ROUTES, *CONSOLE_ROUTES]
TABLES = {"api": API_TABLE, "ops": list(OPS_ROUTES)}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "get", "")
# What a parameter or a mutation inserts: decoded forms of what a client can send
# percent-encoded (uvicorn decodes %2F, %0A, %0D, %00 into the path), dot segments,
# look-alikes of literal segments, and the literal segments themselves.
NASTY = (
    "x", "", "/", "//", "\n", "\r", "\r\n", "\x00", "\t", " ", ".", "..", "%2F", "%0A",
    "new", "records", "versions", "receipt.json", "holds", "subjects", "v1", "console",
    "é", "\uff561", "v1\u2028", "records\n", "\u0131", "\u212a", "1",
    "00000000-0000-0000-0000-000000000007",
)  # fmt: skip
ROOT_PATHS = ("", "/p", "/v1", "/console", "/p/")


def _templates(table: list[BaseRoute]) -> list[str]:
    return [route.path for route in table if isinstance(route, Route)]


def _scan(table: list[BaseRoute], scope: dict[str, Any]) -> tuple[BaseRoute, dict[str, Any]] | None:
    """A plain Router's choice: the first route in the table's order that matches fully."""
    for route in table:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, dict(child)
    return None


@st.composite
def _requests(draw: st.DrawFn, table: list[BaseRoute]) -> tuple[str, str, str]:
    template = draw(st.sampled_from(_templates(table)))
    segments = template.split("/")
    filled = [draw(st.sampled_from(NASTY)) if "{" in part else part for part in segments]
    path = "/".join(filled)
    # Mutations at the edges, any number of them.
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("slash", "double", "insert", "drop", "tail", "long", "case")))
        cut = draw(st.integers(0, len(path)))
        if kind == "slash":
            path += "/"
        elif kind == "double":
            path = path[:cut] + "/" + path[cut:]
        elif kind == "insert":
            path = path[:cut] + draw(st.sampled_from(NASTY)) + path[cut:]
        elif kind == "drop" and path:
            path = path[:cut] + path[cut + 1 :]
        elif kind == "tail":
            path += draw(st.sampled_from(NASTY))
        elif kind == "long":
            path += "/a" * draw(st.integers(1, 2_000))
        elif kind == "case":
            path = path.upper()
    root_path = draw(st.sampled_from(ROOT_PATHS))
    if root_path and draw(st.booleans()):
        path = root_path + path  # behind a proxy that kept its prefix in the path
    method = draw(st.sampled_from(METHODS))
    return method, path, root_path


def _check(table: list[BaseRoute], method: str, path: str, root_path: str) -> None:
    router = IndexedRouter(table)
    scope = {"type": "http", "method": method, "path": path, "root_path": root_path}
    expected = _scan(table, scope)
    found = router._full_match(dict(scope))
    if found is None:
        return  # the indexed router answers nothing itself: Starlette's scan answers
    assert expected is not None, (method, path, root_path, found)
    assert found[0] is expected[0], (method, path, root_path, found[0], expected[0])
    assert found[1] == expected[1]  # the same path parameters, the same endpoint


@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=_requests(API_TABLE))
def test_the_indexed_router_picks_the_scans_route_for_mutated_api_and_console_paths(
    request: tuple[str, str, str],
) -> None:
    _check(API_TABLE, *request)


@settings(max_examples=300, deadline=None)
@given(request=_requests(list(OPS_ROUTES)))
def test_the_indexed_router_picks_the_scans_route_for_mutated_ops_paths(
    request: tuple[str, str, str],
) -> None:
    _check(list(OPS_ROUTES), *request)


@settings(max_examples=400, deadline=None)
@given(path=st.text(max_size=80).map(lambda text: "/" + text), method=st.sampled_from(METHODS))
def test_the_indexed_router_picks_the_scans_route_for_arbitrary_text(
    path: str, method: str
) -> None:
    _check(API_TABLE, method, path, "")


@pytest.mark.parametrize(
    ("method", "path", "root_path"),
    [
        ("GET", "/console/holds/new", ""),
        ("POST", "/console/holds/new/", ""),
        ("GET", "/console//holds/new", ""),  # {rest:path} takes it, as in the scan
        ("GET", "/console/holds/x/amend", ""),  # a POST route: GET falls to {rest:path}
        ("GET", "/v1/subjects/a/b/records", ""),  # a decoded %2F in the reference
        ("GET", "/v1/subjects/x/records/n\n", ""),  # a decoded %0A
        ("GET", "/v1/subjects/x/records/n\r", ""),
        ("GET", "/v1/subjects/../records/n", ""),
        ("GET", "/p/v1/subjects/x/records/n", "/p"),
        ("GET", "/p/v1/tenant", "/p/"),
        ("GET", "/v1/v1/tenant", "/v1"),
        ("GET", "/console", "/console"),  # the route path is "" behind that prefix
        ("HEAD", "/console/static/app.css", ""),
        ("HEAD", "/v1/subjects/x/artefacts/y/content", ""),
        ("DELETE", "/v1/subjects/x/artefacts/y/content", ""),
    ],
)
def test_edge_paths_reach_the_scans_route(method: str, path: str, root_path: str) -> None:
    _check(API_TABLE, method, path, root_path)


def _literal_bound(router: IndexedRouter) -> int:
    """How many keys the table alone allows per "/" count."""
    return math.prod(1 + len(literals) for literals in router._literals)


def test_a_client_cannot_grow_the_candidate_cache_by_sending_new_path_shapes() -> None:
    router = IndexedRouter(API_TABLE)
    router.candidates("/")
    # A path of n "/" is one 404 for the vault and one cache entry; each fits the request
    # target limit (uvicorn decodes %2F to "/", so "%2F" runs count as well).
    shapes = range(1, MAX_REQUEST_TARGET_BYTES // 2)
    tracemalloc.start()
    try:
        for n in shapes:
            router.candidates("/v1/subjects/x/records" + "/" * n)
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    route_shapes = {route.path.count("/") for route in API_TABLE if isinstance(route, Route)}
    # Bounded by the table: its own "/" counts, each with the literal combinations.
    assert len(router._candidates) <= len(route_shapes) + 1, len(router._candidates)
    assert grown < 256 * 1024, grown


def test_the_literal_combinations_alone_are_many_keys_per_shape() -> None:
    """The other factor of that bound: literals from different routes combine freely in a
    key ("/healthz/tenant/settings/records" takes four of them), ~18,000 per "/" count."""
    router = IndexedRouter(API_TABLE)
    router.candidates("/")
    assert _literal_bound(router) > 10_000
