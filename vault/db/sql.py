"""Named SQL blocks, loaded once from queries/*.sql.

A block starts with a line `-- name: some_name` and runs to the next such line. Queries
use `$n` parameters only; nothing is ever formatted into SQL text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def _load(module: str) -> dict[str, str]:
    text = resources.files("vault.db.queries").joinpath(f"{module}.sql").read_text("utf-8")
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    blocks = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if not blocks:
        raise RuntimeError(f"no named queries in {module}.sql")
    return blocks


class Queries:
    """Attribute access to the blocks of one file: `Q = Queries("api_keys"); Q.find`."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> str:
        try:
            return _load(self._module)[name]
        except KeyError:
            raise AttributeError(f"{self._module}.sql has no query {name!r}") from None
