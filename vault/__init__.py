"""datavault: a multi-tenant vault for end-user data with deletion guarantees."""

from __future__ import annotations

import sys

# structlog imports rich (and pygments behind it) whenever rich is installed, for its
# development console renderer and its rich tracebacks; the vault uses neither (JSON lines,
# plain tracebacks without locals: vault/observability/logging.py). rich is not in the
# production image, but the test environment has it (openapi-python-client needs it), and
# there the import cost every `datavault` process ~0.15 s of CPU at start, hundreds of
# processes a suite run. So structlog is imported first here, with rich hidden from it: a
# None entry in sys.modules makes `import rich` fail as if it were absent. The entry is
# removed at once, so anything else that wants rich still gets it.
_HIDDEN_FROM_STRUCTLOG = ("rich",)


def _import_structlog_without_rich() -> None:
    if "structlog" in sys.modules:
        return
    hidden = [name for name in _HIDDEN_FROM_STRUCTLOG if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


_import_structlog_without_rich()
