"""The browser tests' --disable-features repeats the features Playwright itself disables
(tests/console/browser_support.py): Chromium keeps only the last --disable-features, so
a feature Playwright adds in a later version would otherwise be on again unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

import playwright

from tests.console.browser_support import CHROMIUM_ARGS, PLAYWRIGHT_DISABLED_FEATURES

# playwright-core's chromiumSwitches.ts, as its driver bundles it: `disabledFeatures = [`
# then one quoted feature a line (comments between them), up to `]`.
_LIST = re.compile(r"\bdisabledFeatures = \[(.*?)\]", re.S)


def _playwrights_own_list() -> set[str]:
    driver = Path(playwright.__file__).parent / "driver" / "package" / "lib"
    lists = [
        found.group(1)
        for path in driver.rglob("*.js")
        if (found := _LIST.search(path.read_text(encoding="utf-8", errors="replace")))
    ]
    assert lists, f"no disabledFeatures list under {driver}: where does Playwright keep it now?"
    return {name for body in lists for name in re.findall(r'^\s*"(\w+)"', body, re.M)}


def test_the_browser_tests_disable_every_feature_playwright_disables() -> None:
    theirs = _playwrights_own_list()
    assert theirs, "Playwright's disabledFeatures list read as empty"
    assert theirs - set(PLAYWRIGHT_DISABLED_FEATURES) == set()


def test_the_browser_tests_pass_one_disable_features() -> None:
    assert len([a for a in CHROMIUM_ARGS if a.startswith("--disable-features=")]) == 1
