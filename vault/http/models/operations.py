"""Health and readiness (no authentication)."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class Health(Struct):
    status: Literal["ok"]


class ReadinessChecks(Struct):
    database: bool
    blob_store: bool


class Readiness(Struct):
    """200 when every check passes, 503 (with Retry-After) otherwise."""

    status: Literal["ready", "unavailable"]
    checks: ReadinessChecks
