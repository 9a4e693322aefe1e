"""The CLI's settings builder: environment first, a flag of serve/api/worker on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault.cli import SERVER_FLAGS, build_parser, settings_from_args
from vault.config import ENVIRONMENT, ConfigError, settings_from_env

# (variable, its value, flag, the flag's value, Settings field, the value the flag gives)
OVERRIDES = [
    ("DATAVAULT_PORT", "9000", "--port", "9100", "port", 9100),
    ("DATAVAULT_HOST", "0.0.0.0", "--host", "127.0.0.2", "host", "127.0.0.2"),
    ("DATAVAULT_DATA_DIR", "/env/data", "--data-dir", "/flag/data", "data_dir", Path("/flag/data")),
    ("DATABASE_URL", "postgresql://env/vault", "--database-url", "postgresql://flag/vault",
     "database_url", "postgresql://flag/vault"),
    ("DATAVAULT_ROOT_KEY", "aws-kms:alias/env", "--root-key", "file:/flag/root.key",
     "root_key", "file:/flag/root.key"),
    ("DATAVAULT_DRAIN_SECONDS", "30", "--drain-seconds", "2.5", "drain_seconds", 2.5),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, _, _ in ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)


def test_every_server_flag_is_covered_here() -> None:
    assert sorted(flag for flag, *_ in SERVER_FLAGS) == sorted(o[2] for o in OVERRIDES)


@pytest.mark.parametrize("command", ["serve", "api", "worker", "migrate"])
@pytest.mark.parametrize(("variable", "env_value", "flag", "flag_value", "field", "expected"),
                         OVERRIDES)  # fmt: skip
def test_flag_overrides_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, command: str, variable: str, env_value: str,
    flag: str, flag_value: str, field: str, expected: object,
) -> None:  # fmt: skip
    monkeypatch.setenv(variable, env_value)
    from_env = settings_from_args(build_parser().parse_args([command]))
    from_flag = settings_from_args(build_parser().parse_args([command, flag, flag_value]))
    env_only = getattr(settings_from_env({variable: env_value}), field)
    assert getattr(from_env, field) == env_only != expected
    assert getattr(from_flag, field) == expected


def test_environment_applies_where_no_flag_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAVAULT_PORT", "9000")
    monkeypatch.setenv("DATAVAULT_HOST", "0.0.0.0")
    settings = settings_from_args(build_parser().parse_args(["serve", "--host", "127.0.0.2"]))
    assert (settings.host, settings.port) == ("127.0.0.2", 9000)


def test_bad_environment_setting_is_a_config_error_even_with_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATAVAULT_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="DATAVAULT_LOG_LEVEL"):
        settings_from_args(build_parser().parse_args(["serve", "--port", "9100"]))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "DATAVAULT_PORT"),
        (["--port", "0"], "DATAVAULT_PORT"),
        (["--drain-seconds", "-1"], "DATAVAULT_DRAIN_SECONDS"),
    ],
)
def test_a_flag_is_checked_like_its_variable(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_args(build_parser().parse_args(["serve", *flags]))
    settings_from_args(build_parser().parse_args(["serve", "--port", "65535"]))
