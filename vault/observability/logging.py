"""structlog JSON lines on stdout; secret-named fields never leave the process."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Any event field whose name contains one of these is replaced before rendering, so a
# careless `log.info(..., secret=...)` cannot leak. Values are never inspected.
SECRET_FIELD_MARKERS = (
    "secret", "token", "password", "authorization", "api_key", "key_material", "plaintext",
    "subject_ref", "pepper", "cookie",
)  # fmt: skip
# Fields that contain a marker but hold only identifiers.
_ALLOWED_FIELDS = frozenset({"api_key_id", "subject_ref_hash"})
REDACTED = "[redacted]"


def drop_secret_fields(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in list(event):
        if _is_secret_field(name):
            event[name] = REDACTED
    return event


@functools.lru_cache(maxsize=4096)
def _is_secret_field(name: str) -> bool:
    # Field names come from code, a small set: decided once each, not on every line.
    lowered = name.lower()
    if lowered in _ALLOWED_FIELDS:
        return False
    return any(marker in lowered for marker in SECRET_FIELD_MARKERS)


class _CurrentStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stdout (or stderr), not the one present at configuration
    time (tests swap them)."""

    def __init__(self, to_stderr: bool) -> None:
        super().__init__()
        self._to_stderr = to_stderr

    @property
    def stream(self) -> Any:
        return sys.stderr if self._to_stderr else sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _StreamLoggerFactory:
    def __init__(self, to_stderr: bool) -> None:
        self._to_stderr = to_stderr

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        return structlog.PrintLogger(sys.stderr if self._to_stderr else sys.stdout)


def configure_logging(level: str = "info", *, to_stderr: bool = False) -> None:
    """Servers log to stdout; operator commands log to stderr, so their stdout stays the
    command's output (`--json` for scripts)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        # Settings refuse unknown names (exit 2); quietly logging at another level than
        # the operator asked for would hide lines or flood them.
        raise ValueError(f"unknown log level {level!r}")
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_secret_fields,
        # Plain-text tracebacks: no local variables, which could hold keys or plaintext.
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # No file given: each logger writes to whatever sys.stdout is at that moment.
        logger_factory=_StreamLoggerFactory(to_stderr),
        cache_logger_on_first_use=False,
    )
    # Standard-library loggers (uvicorn, the crypto layer's key-file warning) go through
    # the same JSON rendering.
    handler = _CurrentStreamHandler(to_stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                drop_secret_fields,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
