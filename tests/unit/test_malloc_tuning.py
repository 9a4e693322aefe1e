"""The serving process's malloc settings apply on glibc (the 2 GiB upload test,
tests/e2e/test_upload_memory.py, holds a `datavault serve` with them to +64 MiB)."""

from __future__ import annotations

import platform
import sys

import pytest

from vault.malloc_tuning import MALLOC_ARENAS, TRIM_THRESHOLD_BYTES, tune_malloc


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)
def test_malloc_settings_apply_on_glibc() -> None:
    assert tune_malloc() is True


def test_memory_kept_by_the_arenas_is_bounded_well_below_the_memory_test_limit() -> None:
    assert MALLOC_ARENAS * TRIM_THRESHOLD_BYTES <= 32 * 1024 * 1024
