"""The indexed router (vault/http/dispatch.py) picks the route Starlette's full scan picks,
for every route of the vault's table and the paths around them, and answers everything
that is not a full match (404, 405, a slash redirect) through that scan as before."""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router

from vault.api_routes import ROUTES
from vault.app import create_app
from vault.config import Settings
from vault.console.routes import ROUTES as CONSOLE_ROUTES
from vault.http.dispatch import IndexedRouter

TABLE: list[BaseRoute] = [*ROUTES, *CONSOLE_ROUTES]
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# What a parameter is filled with: ids, names, the words literal routes use beside them.
FILLS = ("x", str(uuid.UUID(int=7)), "1", "new", "records", "a.b", "receipt.json")


def _scan(scope: dict[str, Any]) -> BaseRoute | None:
    """Starlette's own choice: the first route that matches fully."""
    for route in TABLE:
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": ""}


def _paths() -> set[str]:
    """Every route's path with its parameters filled each way, and its neighbours: a
    trailing slash, a segment more or less, a newline, a literal changed."""
    paths = {"/", "/v1", "/v1/", "/v2/api-keys", "/console/holds/new\n", "/v1/tenant\n"}
    for route in TABLE:
        assert isinstance(route, Route)
        template = route.path.replace("{rest:path}", "{rest}")
        names = [part.split("}")[0] for part in template.split("{")[1:]]
        for values in itertools.product(FILLS, repeat=min(len(names), 2)):
            path = template
            for name, value in zip(names, itertools.cycle(values or ("x",)), strict=False):
                path = path.replace("{" + name + "}", value, 1)
            parent = path.rsplit("/", 1)[0] or "/"
            paths |= {path, path + "/", path + "/more", parent, path.upper(), path + "\n"}
    return paths


def test_every_path_and_method_reaches_the_route_the_full_scan_reaches() -> None:
    router = IndexedRouter(TABLE)
    checked = 0
    for path, method in itertools.product(sorted(_paths()), METHODS):
        scope = _scope(method, path)
        found = router._full_match(scope)
        expected = _scan(scope)
        if "\n" in path:
            # Left to Starlette's scan, which then answers it as before.
            assert found is None, (method, path)
            continue
        assert (found[0] if found else None) is expected, (method, path)
        checked += expected is not None
    # Every route of the table was reached by some path and method.
    assert checked >= len(TABLE)


def test_a_record_request_tries_one_pattern() -> None:
    router = IndexedRouter(TABLE)
    for path in ("/v1/subjects/u-1/records/profile", "/v1/subjects/u-1/records"):
        assert len(router.candidates(path)) == 1, router.candidates(path)
    # A reference that is also a route's word is no different.
    assert len(router.candidates("/v1/subjects/records/records/records")) == 1
    # The table had them 17th and 18th.
    assert len(TABLE) > 30


def test_the_candidate_lists_are_bounded_by_the_table_not_the_paths_asked() -> None:
    router = IndexedRouter(TABLE)
    for n in range(2_000):
        router.candidates(f"/{uuid.uuid4()}/{n}/x/{'y/' * (n % 9)}")
        router.candidates(f"/v1/subjects/{uuid.uuid4()}/records/{n}")
    # Each key: the "/" count, and per indexed place a literal some route has or "other".
    slash_counts = {_route_slashes(route) for route in TABLE} | set(range(12))
    bound = len(slash_counts) * math.prod(1 + len(literals) for literals in router._literals)
    assert len(router._candidates) <= bound
    assert len(router._candidates) < 100


def _route_slashes(route: BaseRoute) -> int:
    assert isinstance(route, Route)
    return route.path.count("/")


async def _ok(request: Request) -> Response:
    return PlainTextResponse(request.url.path)


def _app(router_class: type[Router]) -> Starlette:
    app = Starlette(
        routes=[
            Route("/items", _ok, methods=["GET", "POST"]),
            Route("/items/new", _ok),
            Route("/items/{item_id}", _ok, methods=["GET", "DELETE"]),
            Route("/pages/{rest:path}", _ok),
        ]
    )
    app.router = router_class(app.router.routes)
    return app


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/items"),
        ("POST", "/items"),
        ("PUT", "/items"),  # 405
        ("GET", "/items/new"),
        ("DELETE", "/items/new"),  # 405: the literal route comes first, as before
        ("DELETE", "/items/7"),
        ("PATCH", "/items/7"),  # 405
        ("GET", "/items/"),  # redirected to /items
        ("GET", "/items/7/"),  # redirected
        ("GET", "/nothing"),  # 404
        ("GET", "/pages/a/b/c"),
        ("GET", "/items%0A"),
    ],
)
def test_answers_are_the_plain_routers(method: str, path: str) -> None:
    async def answer(router_class: type[Router]) -> tuple[object, ...]:
        transport = httpx.ASGITransport(app=_app(router_class))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.request(method, path, follow_redirects=False)
        return (
            response.status_code, response.headers.get("allow"),
            response.headers.get("location"), response.text,
        )  # fmt: skip

    plain = asyncio.run(answer(Router))
    assert asyncio.run(answer(IndexedRouter)) == plain
    assert plain[0] in {200, 307, 404, 405}


def test_a_route_added_after_the_router_was_made_is_reached() -> None:
    app = _app(IndexedRouter)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/items/7")).status_code == 200  # indexes the table
            app.router.routes.insert(0, Route("/items/{item_id}", _added))
            assert (await http.get("/items/7")).text == "added"
            app.router.routes.append(Route("/later/{x}", _added))
            assert (await http.get("/later/1")).text == "added"

    asyncio.run(run())


async def _added(request: Request) -> Response:
    return PlainTextResponse("added")


def test_the_vault_app_routes_through_the_indexed_router(tmp_path: Path) -> None:
    """create_app builds without connecting (its lifespan connects): the API's and the
    worker's apps both dispatch through the index, over the table they serve."""
    settings = Settings(data_dir=tmp_path)
    api = create_app(settings, "postgresql://unused", run_jobs=False)
    assert isinstance(api.router, IndexedRouter)
    assert api.router.routes == TABLE
    worker = create_app(settings, "postgresql://unused", serve_api=False)
    assert isinstance(worker.router, IndexedRouter)
    assert [r.path for r in worker.router.routes if isinstance(r, Route)] == [
        "/healthz", "/readyz", "/metrics",
    ]  # fmt: skip
