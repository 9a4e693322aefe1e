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


# The same two passing and two skipped tests, one of each per file: with `--dist loadfile`
# on two workers each worker runs one file (xdist hands every worker one file first), so
# each worker ran one test and only the sum over both reaches a floor of two. Each passing
# test writes down which worker ran it (beside its file), so the test sees the split.
SPLIT = {
    "test_probe_a.py": """
import os
from pathlib import Path

import pytest

def test_one():
    (Path(__file__).parent / "ran_one").write_text(os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.skip(reason="as a suite whose tests all skip")
def test_skipped_a():
    pass
""",
    "test_probe_b.py": """
import os
from pathlib import Path

import pytest

def test_two():
    (Path(__file__).parent / "ran_two").write_text(os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.skip(reason="as a suite whose tests all skip")
def test_skipped_b():
    pass
""",
}


def _pytest(
    folder: Path, *args: str, files: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest on `folder` with the floor plugin alone (tests/min_tests.py; the suite's
    conftest loads it).
    Its temp dir is given: a session that picks its own resets /tmp/pytest-of-<user> to
    0700, which locks the embedded PostgreSQL servers other workers run under it out.
    The installed plugins are not loaded (hypothesis, playwright, … took ~0.4 s of each
    start, and each xdist worker's): only xdist, which the parallel runs name with -n."""
    files = files or {"test_probe.py": TESTS}
    for name, text in files.items():
        (folder / name).write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.min_tests",
         "-p", "xdist.plugin", "--rootdir", str(folder), "-c", "/dev/null",
         "--basetemp", str(folder / "tmp"), *(str(folder / name) for name in files), *args],
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
    # Each worker runs one of the two files, so each ran one test: a guard that judged one
    # worker's count (or each worker's alone) would fail this run; the sum reaches the floor.
    run = _pytest(tmp_path, "-n", "2", "--dist", "loadfile", "--min-tests=2", files=SPLIT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed, 2 skipped" in run.stdout
    workers = {(tmp_path / name).read_text() for name in ("ran_one", "ran_two")}
    assert workers == {"gw0", "gw1"}, workers


def test_a_parallel_run_with_fewer_tests_than_the_floor_fails(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "-n", "2", "--min-tests=3")
    assert run.returncode == 1, run.stdout
    assert "only 2 tests ran, fewer than --min-tests=3" in run.stdout
