"""deploy/grafana/datavault.json shows the deletion brakes and the background jobs, and
its panels neither share ids nor overlap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "datavault.json"


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def test_rate_brake_epoch_age_and_job_health_have_panels() -> None:
    shown = " ".join(t["expr"] for panel in _panels() for t in panel["targets"])
    for metric in (
        "datavault_erasures_rate_braked",
        "datavault_root_epoch_age_seconds",
        "datavault_job_runs_total",
        "datavault_job_last_success_timestamp_seconds",
        "datavault_job_interval_seconds",
        "datavault_webhook_attempts_total",
        "datavault_webhook_queue_age_seconds",
        "datavault_ledger_objects",
        "datavault_ledger_folded_through",
    ):
        assert metric in shown, metric


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = _panels()
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
