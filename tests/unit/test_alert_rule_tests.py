"""Every alert rule in deploy/prometheus/alerts.yaml has promtool unit tests
(alerts.test.yaml, run by `make promtool-test`): a case where it fires and one where it
stays silent. promtool itself checks what they expect; this checks that nothing is left
untested, so a new alert without a test fails here first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _alert_names() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def _cases() -> list[dict[str, Any]]:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yaml").read_text())
    assert tests["rule_files"] == ["alerts.yaml"]
    return [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing = {case["alertname"] for case in _cases() if case["exp_alerts"]}
    silent = {case["alertname"] for case in _cases() if not case["exp_alerts"]}
    alerts = _alert_names()
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested staying silent"
    assert (firing | silent) - alerts == set(), "tests of alerts that do not exist"


def test_firing_cases_check_labels_and_annotations() -> None:
    for case in _cases():
        for expected in case["exp_alerts"]:
            assert expected["exp_labels"]["severity"] in {"page", "ticket"}, case
            assert expected["exp_annotations"]["summary"], case
            assert expected["exp_annotations"]["description"], case
