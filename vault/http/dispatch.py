"""Routing that tries only the routes a path could match (issue 19, seventh round).

Starlette's Router tries every route's regular expression in order until one matches:
a record request went through 18 of them. IndexedRouter first narrows the table by what
a path's shape makes certain, then tries the routes left in the table's own order, so
the route it finds is the one the full scan would find first:

- a route's `{name}` parameters (every convertor but `path`) never match a "/", so a
  path matches it only with as many "/" as the route's own path has;
- a literal segment among the first four must be the path's own.

A `{rest:path}` parameter spans segments: its route needs at least its own "/" count
and its literal segments before the parameter. A segment mixing a literal and a
parameter counts as a parameter; anything but a Route (a Mount) is a candidate for every
path, and a path holding a newline is left to the full scan (below). Only a full match
(path and method) is answered from the narrowed list; anything else (a method not
allowed, a redirect for a trailing slash, not found) falls through to Starlette's own
scan of the whole table, which answers it exactly as before. The candidate lists are
keyed by the path's shape, segments no route names folded into one key, so their number
is bounded by the table, not by the paths requested: a "/" count past every route's
own is one key (red team 15: counted as sent, every new count was an entry), and past
MAX_CACHED_SHAPES shapes the candidates are found without being kept.
"""

from __future__ import annotations

from typing import Any

from starlette._utils import get_route_path
from starlette.convertors import PathConvertor
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

from vault.http.subject_path import never_redirected

# A segment no route has as a literal at that place: every such segment shares a key.
_OTHER = object()
# Where a route has a parameter (or anything else than a literal).
_ANY = object()
# The literal segments that narrow the table: the first four ("v1", "subjects", the
# reference, "records"). Deeper ones are what Route.matches checks on the one or two left.
_INDEXED_SEGMENTS = 4

_Key = tuple[object, ...]

# Shapes whose candidate lists are kept. The table's own paths make a few dozen; only
# paths combining its literal segments in ways no route does make more.
MAX_CACHED_SHAPES = 1024


def _shape(path: str) -> tuple[int, tuple[str, ...]]:
    """How many "/" the path has, and its first segments (fewer if it has fewer)."""
    return path.count("/"), tuple(path.split("/", _INDEXED_SEGMENTS + 1)[1 : _INDEXED_SEGMENTS + 1])


class _Pattern:
    """What a route's path fixes: its "/" count (or, with a `path` parameter, the least
    count) and its literal first segments. Anything but a Route can match any path."""

    __slots__ = ("at_least", "segments", "slashes")

    def __init__(self, route: BaseRoute) -> None:
        self.slashes = 0
        self.at_least = True
        self.segments: tuple[object, ...] = ()
        if not isinstance(route, Route):
            return
        slashes, segments = _shape(route.path)
        self.slashes = slashes
        self.at_least = any(isinstance(c, PathConvertor) for c in route.param_convertors.values())
        fixed: list[object] = []
        for segment in segments:
            if ":path}" in segment:
                break  # it spans segments: none from here on is fixed
            fixed.append(_ANY if "{" in segment else segment)
        self.segments = tuple(fixed)

    def could_match(self, key: _Key) -> bool:
        slashes = key[0]
        assert isinstance(slashes, int)
        if slashes < self.slashes or (slashes > self.slashes and not self.at_least):
            return False
        return all(
            mine is _ANY or mine == theirs
            for mine, theirs in zip(self.segments, key[1:], strict=False)
        )


class IndexedRouter(Router):
    """A Router whose full matches are found among the routes a path's shape allows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._indexed: list[BaseRoute] = []
        self._patterns: list[_Pattern] = []
        self._literals: list[frozenset[str]] = []
        self._candidates: dict[_Key, tuple[BaseRoute, ...]] = {}
        self._most_slashes = 0

    def _reindex(self) -> None:
        """From the table as it is now (a route added later is indexed too)."""
        self._indexed = list(self.routes)
        self._patterns = [_Pattern(route) for route in self._indexed]
        self._literals = [
            frozenset(
                segment
                for pattern in self._patterns
                if len(pattern.segments) > place
                and isinstance(segment := pattern.segments[place], str)
            )
            for place in range(_INDEXED_SEGMENTS)
        ]
        self._candidates = {}
        # Any count past every route's own matches the same routes (those with a `path`
        # parameter whose least count it passes): one key for them all.
        self._most_slashes = max((pattern.slashes for pattern in self._patterns), default=0) + 1

    def candidates(self, route_path: str) -> tuple[BaseRoute, ...]:
        """The routes, in the table's order, that a path of this shape could match."""
        # Routes are only ever added to the table (add_route, mount append): its length
        # tells a change, where comparing the lists cost a look at every route per request.
        if len(self._indexed) != len(self.routes):
            self._reindex()
        slashes, segments = _shape(route_path)
        key: _Key = (
            min(slashes, self._most_slashes),
            *(
                segments[place] if place < len(segments) and segments[place] in literals else _OTHER
                for place, literals in enumerate(self._literals)
            ),
        )
        found = self._candidates.get(key)
        if found is None:
            found = tuple(
                route
                for route, pattern in zip(self._indexed, self._patterns, strict=True)
                if pattern.could_match(key)
            )
            if len(self._candidates) < MAX_CACHED_SHAPES:
                self._candidates[key] = found
        return found

    def _full_match(self, scope: Scope) -> tuple[BaseRoute, Scope] | None:
        if scope["type"] != "http":
            return None
        route_path = get_route_path(scope)
        # A route's pattern ends in `$`, which also matches before a final newline: a
        # literal "holds" matches "holds\n". Such a path (an encoded %0A) takes the scan.
        if "\n" in route_path:
            return None
        for route in self.candidates(route_path):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, child_scope
        return None

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._full_match(scope)
        if found is None:
            slashed = scope["type"] == "http" and get_route_path(scope).endswith("/")
            if slashed and never_redirected(scope):
                # No subject route ends in "/", so the full scan's only other answer
                # would be its redirect to the placeholder subject (red team 20).
                await self.default(scope, receive, send)
                return
            # Not found, not allowed, a slash to redirect, not HTTP: Starlette's own scan.
            await super().app(scope, receive, send)
            return
        route, child_scope = found
        if "router" not in scope:
            scope["router"] = self
        scope["route"] = route
        scope.update(child_scope)
        await route.handle(scope, receive, send)
