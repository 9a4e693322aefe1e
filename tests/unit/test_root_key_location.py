"""Where the default root key file lives: `<data dir>/root.key`, as README says."""

import stat
from pathlib import Path

import pytest

from crypto.providers import LocalKeyFileProvider
from vault.config import Settings
from vault.runtime import open_root_key


def test_default_key_file_is_in_the_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    open_root_key(Settings(data_dir=Path(".datavault")))
    key_file = tmp_path / ".datavault" / "root.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (tmp_path / ".datavault" / ".datavault").exists()


def test_default_key_file_is_in_an_absolute_data_dir(tmp_path: Path) -> None:
    open_root_key(Settings(data_dir=tmp_path / "data"))
    assert (tmp_path / "data" / "root.key").exists()


def test_a_key_file_at_the_old_doubled_path_is_moved_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    misplaced = tmp_path / ".datavault" / ".datavault" / "root.key"
    LocalKeyFileProvider.open_or_create(misplaced)
    old_key = misplaced.read_bytes()
    open_root_key(Settings(data_dir=Path(".datavault")))
    assert (tmp_path / ".datavault" / "root.key").read_bytes() == old_key
    assert not misplaced.exists()
