"""`make test` cannot pass on a suite that ran almost nothing: with --min-tests=N a run in
which fewer than N tests ran fails, and skipped tests do not count as run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TESTS = """
import pytest

def test_one():
    pass

def test_two():
    pass

@pytest.mark.skip(reason="as a suite whose tests all skip")
def test_skipped_a():
    pass

@pytest.mark.skip(reason="as a suite whose tests all skip")
def test_skipped_b():
    pass
"""


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on `folder` with the floor plugin alone (tests/min_tests.py; the suite's
    conftest loads it).
    Its temp dir is given: a session that picks its own resets /tmp/pytest-of-<user> to
    0700, which locks the embedded PostgreSQL servers other workers run under it out.
    The installed plugins are not loaded (hypothesis, playwright, … took ~0.4 s of each
    start, and each xdist worker's): only xdist, which the parallel runs name with -n."""
    (folder / "test_probe.py").write_text(TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.min_tests",
         "-p", "xdist.plugin", "--rootdir", str(folder), "-c", "/dev/null",
         "--basetemp", str(folder / "tmp"), str(folder / "test_probe.py"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip


def test_a_run_with_fewer_tests_than_the_floor_fails_and_skipped_ones_do_not_count(
    tmp_path: Path,
) -> None:
    run = _pytest(tmp_path, "--min-tests=3")  # four collected, two ran, two skipped
    assert run.returncode == 1, run.stdout
    assert "only 2 tests ran, fewer than --min-tests=3" in run.stdout


def test_a_run_that_reaches_the_floor_passes(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "--min-tests=2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed, 2 skipped" in run.stdout


# `make pytest` runs the suite on several xdist workers (-n): each worker runs a share, and
# the floor is the whole run's, counted where every worker's reports arrive.


def test_a_parallel_run_counts_the_tests_of_every_worker(tmp_path: Path) -> None:
    # The two workers share the four tests: a worker that ran fewer than the floor does
    # not fail the run; the sum over both reaches it.
    run = _pytest(tmp_path, "-n", "2", "--dist", "load", "--min-tests=2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed, 2 skipped" in run.stdout


def test_a_parallel_run_with_fewer_tests_than_the_floor_fails(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "-n", "2", "--min-tests=3")
    assert run.returncode == 1, run.stdout
    assert "only 2 tests ran, fewer than --min-tests=3" in run.stdout
