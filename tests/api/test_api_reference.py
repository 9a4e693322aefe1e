"""docs/api.md, the project's own API reference, documents exactly the operations the vault
serves: each with its method, path and operationId as /openapi.json has them, and none
that does not exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.support import ServerThread

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "api.md"
# "#### `POST /v1/holds` — placeHold"
HEADING = re.compile(r"^#### `(?P<method>[A-Z]+) (?P<path>/\S*)` — (?P<id>\w+)$")
METHODS = ("get", "head", "put", "post", "patch", "delete")


def _documented() -> list[tuple[str, str, str]]:
    found = []
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        match = HEADING.match(line)
        if match:
            found.append((match["method"].lower(), match["path"], match["id"]))
        else:
            assert not line.startswith("#### "), f"an operation heading of another form: {line}"
    return found


def _served(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (method, path, operation["operationId"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_reference_documents_every_operation_and_nothing_else(server: ServerThread) -> None:
    with server.client() as http:
        document = http.get("/openapi.json").json()
    documented, served = _documented(), _served(document)
    assert len(documented) == len(set(documented)), "an operation documented twice"
    assert set(served) - set(documented) == set(), "served but not in docs/api.md"
    assert set(documented) - set(served) == set(), "in docs/api.md but not served"


def test_the_walkthrough_uses_only_served_paths(server: ServerThread) -> None:
    """Every /v1 path a curl line of the reference calls matches a served route."""
    with server.client() as http:
        paths = list(http.get("/openapi.json").json()["paths"])
    templates = [re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", p) + "$") for p in paths]
    text = REFERENCE.read_text(encoding="utf-8")
    called = set(re.findall(r"\$VAULT(/[^\s\"?]*)", text))
    assert called
    for path in called:
        assert any(t.match(path) for t in templates), path


def test_the_docs_stand_on_their_own() -> None:
    """A clone has no ../shared: the README and docs/ never point there."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert "../shared" not in page.read_text(encoding="utf-8"), page.name
