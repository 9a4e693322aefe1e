"""structlog, imported without rich.

structlog imports rich (and pygments behind it) whenever rich is installed, for its
development console renderer and its rich tracebacks; the vault uses neither (JSON lines,
plain tracebacks without locals: vault/observability/logging.py). rich is not in the
production image, but the test environment has it (openapi-python-client needs it), and
there it cost every `datavault` process ~0.09 s of CPU at start (more where its bytecode
is not cached), in hundreds of processes a suite run. `datavault` imports
structlog through this first; other importers (the test process) are unaffected."""

from __future__ import annotations

import sys

_HIDDEN_FROM_STRUCTLOG = ("rich",)


def import_structlog_without_rich() -> None:
    if "structlog" in sys.modules:
        return
    hidden = [name for name in _HIDDEN_FROM_STRUCTLOG if name not in sys.modules]
    # A None entry in sys.modules makes `import rich` fail as if rich were absent; the
    # entries are removed at once, so anything else that wants rich still gets it.
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
