"""Every `Q.name` a module uses exists in its SQL file, so a query removed or renamed in
one place cannot leave another module failing only when that path first runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "vault" / "db" / "queries"


def test_every_named_query_used_is_defined() -> None:
    missing = []
    modules = [*(ROOT / "vault").rglob("*.py"), *(ROOT / "workers").glob("*.py")]
    for module in modules:
        source = module.read_text()
        for var, file in re.findall(r'^(\w+) = Queries\("(\w+)"\)', source, re.M):
            defined = set(
                re.findall(r"^-- name: (\w+)", (QUERIES / f"{file}.sql").read_text(), re.M)
            )
            used = set(re.findall(rf"\b{var}\.(\w+)\b", source))
            missing += [f"{module.relative_to(ROOT)}: {file}.{q}" for q in used - defined]
    assert not missing
    assert len(modules) > 20
