"""One Route per path, dispatching by method, so a 405 lists every allowed method."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vault.domain.text import check_text

Endpoint = Callable[[Request], Awaitable[Response]]


class MethodRoute(Route):
    """A Route that remembers its handler per method (for the API description)."""

    def __init__(self, path: str, endpoint: Endpoint, handlers: dict[str, Endpoint]) -> None:
        super().__init__(path, endpoint, methods=list(handlers))
        self.handlers = handlers


def route(path: str, **handlers: Endpoint) -> MethodRoute:
    """`route("/v1/api-keys", GET=list_keys, POST=create_key)`."""
    table = dict(handlers)
    if "GET" in table:
        table.setdefault("HEAD", table["GET"])

    async def endpoint(request: Request) -> Response:
        check_query_text(request)
        return await table[request.method](request)

    endpoint.__name__ = "_".join(handler.__name__ for handler in handlers.values())
    return MethodRoute(path, endpoint, dict(handlers))


def check_query_text(request: Request) -> None:
    """The text rule (vault/domain/text.py) for every query parameter of every route, API
    and console alike, before any handler reads one. (A percent-encoded NUL decodes to
    NUL; invalid UTF-8 was already replaced by Starlette.) Path parameters are ids, which
    answer 404 when malformed, and record names, which have their own pattern; the
    subject reference in the path passes the rule in normalize_ref."""
    for name, value in request.query_params.multi_items():
        check_text(name, "(query parameter name)")
        check_text(value, name)
