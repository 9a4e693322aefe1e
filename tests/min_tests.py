"""--min-tests=N: `make test` cannot pass on a suite that ran almost nothing."""

from __future__ import annotations

import pytest

# --- a suite that runs almost nothing must not pass ---------------------------------------
# pytest exits 5 when it collects nothing, but a suite that lost a folder to a collection
# mistake, or whose tests all skip, exits 0. `make test` asks for a floor of tests that
# ran (passed or failed, not skipped); the count is kept here, per test id.
_ran: set[str] = set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--min-tests",
        type=int,
        default=0,
        help="fail the run unless at least this many tests ran (skipped ones do not count)",
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and not report.skipped:
        _ran.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        # An xdist worker sees only its share of the tests; the controller receives every
        # worker's reports (pytest_runtest_logreport above) and judges the whole run.
        return
    floor: int = session.config.getoption("--min-tests")
    if len(_ran) < floor and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"only {len(_ran)} tests ran, fewer than --min-tests={floor}", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
