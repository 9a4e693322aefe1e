"""The installed distribution's version, for `datavault --version` and build info."""

from __future__ import annotations

import platform

DISTRIBUTION = "datavault"


def distribution_version() -> str:
    """The version pip installed (pyproject's `version`); "unknown" when the code runs from
    a source tree that was never installed. importlib.metadata is imported here, when
    asked: an operator command that never asks need not load it."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def python_version() -> str:
    return platform.python_version()
