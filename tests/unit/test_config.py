import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from vault.config import ConfigError, settings_from_env


def test_defaults_match_the_documented_table() -> None:
    settings = settings_from_env({})
    assert settings.data_dir == Path(".datavault")
    assert (settings.host, settings.port) == ("127.0.0.1", 8700)
    assert settings.database_url is None
    assert settings.root_key_uri == "file:root.key"
    assert settings.trusted_proxies == ()
    assert settings.drain_seconds == 30
    assert settings.backup_retention_days == 35
    assert settings.epoch_days == 30
    assert settings.max_artefact_bytes == 21474836480
    assert (settings.access_log_ip_full_days, settings.access_log_ip_keep_days) == (90, 365)
    assert settings.closure_delay_days == 60


def test_environment_overrides_defaults() -> None:
    settings = settings_from_env(
        {
            "DATAVAULT_PORT": "9000",
            "DATAVAULT_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "DATAVAULT_ROOT_KEY": "aws-kms:alias/datavault",
            "DATABASE_URL": "postgresql://vault@db/vault",
        }
    )
    assert settings.port == 9000
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    )
    assert settings.root_key_uri == "aws-kms:alias/datavault"
    assert not settings.uses_embedded_postgres


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATAVAULT_PORT", "eighty"),
        ("DATAVAULT_PORT", "70000"),
        ("DATAVAULT_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("DATAVAULT_MAX_ARTEFACT_BYTES", "0"),
        ("DATAVAULT_S3_ENDPOINT_URL", "http://127.0.0.1:8333"),
        ("DATAVAULT_ACCESS_LOG_IP_FULL_DAYS", "-1"),
        ("DATAVAULT_ACCESS_LOG_IP_FULL_DAYS", "366"),
        ("DATAVAULT_ACCESS_LOG_IP_KEEP_DAYS", "89"),
        ("DATAVAULT_LOG_LEVEL", "loud"),
        ("DATAVAULT_LOG_LEVEL", "warn "),
        ("DATAVAULT_PUBLIC_URL", "vault.example.com"),
        ("DATAVAULT_PUBLIC_URL", "ftp://vault.example.com"),
        # A base that paths are appended to (playback links, the receipts' key set).
        ("DATAVAULT_PUBLIC_URL", "https://vault.example.com/?tenant=1"),
        ("DATAVAULT_PUBLIC_URL", "https://vault.example.com/#top"),
        ("DATAVAULT_PUBLIC_URL", "https://admin:pw@vault.example.com"),
    ],
)
def test_bad_setting_is_a_config_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match="DATAVAULT_"):
        settings_from_env({variable: value})


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "WARNING"])
def test_documented_log_levels_are_accepted(level: str) -> None:
    assert settings_from_env({"DATAVAULT_LOG_LEVEL": level}).log_level == level


def test_log_level_defaults_to_info() -> None:
    assert settings_from_env({}).log_level == "info"


def test_unknown_log_level_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as refused:
        settings_from_env({"DATAVAULT_LOG_LEVEL": "verbose"})
    assert str(refused.value) == (
        "DATAVAULT_LOG_LEVEL: cannot use 'verbose': use one of debug, info, warning, error"
    )


def test_cli_exits_2_on_a_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vault", "migrate"],
        env={"DATAVAULT_PORT": "eighty", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DATAVAULT_PORT" in result.stderr


def test_ip_retention_may_truncate_at_once_and_drop_on_the_same_day() -> None:
    settings = settings_from_env(
        {"DATAVAULT_ACCESS_LOG_IP_FULL_DAYS": "0", "DATAVAULT_ACCESS_LOG_IP_KEEP_DAYS": "0"}
    )
    assert (settings.access_log_ip_full_days, settings.access_log_ip_keep_days) == (0, 0)


def test_closure_delay_is_at_least_one_day() -> None:
    assert settings_from_env({"DATAVAULT_CLOSURE_DELAY_DAYS": "1"}).closure_delay_days == 1
    with pytest.raises(ConfigError, match="DATAVAULT_CLOSURE_DELAY_DAYS"):
        settings_from_env({"DATAVAULT_CLOSURE_DELAY_DAYS": "0"})


@pytest.mark.parametrize(
    ("environment", "secure"),
    [
        pytest.param({"DATAVAULT_PUBLIC_URL": "https://vault.example.com"}, True, id="https"),
        pytest.param({"DATAVAULT_PUBLIC_URL": "https://127.0.0.1:8443"}, True, id="https-loop"),
        pytest.param({"DATAVAULT_PUBLIC_URL": "http://127.0.0.1:8700"}, False, id="http-loop"),
        pytest.param({"DATAVAULT_PUBLIC_URL": "http://localhost:8700"}, False, id="http-local"),
        pytest.param({"DATAVAULT_PUBLIC_URL": "http://[::1]:8700/"}, False, id="http-v6-loop"),
        pytest.param({"DATAVAULT_PUBLIC_URL": "http://vault.internal"}, True, id="http-network"),
        pytest.param({}, False, id="unset-default-bind-127.0.0.1"),
        pytest.param({"DATAVAULT_HOST": "0.0.0.0"}, True, id="unset-container-bind"),
    ],
)
def test_console_cookies_are_secure_by_configuration(
    environment: dict[str, str], secure: bool
) -> None:
    assert settings_from_env(environment).cookies_secure is secure


def test_public_url_defaults_to_the_bind_address() -> None:
    assert settings_from_env({}).public_base_url == "http://127.0.0.1:8700"
    assert settings_from_env({"DATAVAULT_HOST": "::1"}).public_base_url == "http://[::1]:8700"
    configured = settings_from_env({"DATAVAULT_PUBLIC_URL": "https://vault.example.com/"})
    assert configured.public_base_url == "https://vault.example.com"


def test_receipts_name_the_public_url_and_the_old_issuer_variable_cannot_say_otherwise() -> None:
    """DATAVAULT_RECEIPT_ISSUER named receipts' issuer before API.md made it the public
    URL: left set to something else, it would have changed what receipts say unnoticed."""
    with pytest.raises(ConfigError) as refused:
        settings_from_env({"DATAVAULT_RECEIPT_ISSUER": "datavault"})
    assert str(refused.value).startswith("DATAVAULT_RECEIPT_ISSUER is no longer read")
    assert "DATAVAULT_PUBLIC_URL (now http://127.0.0.1:8700)" in str(refused.value)
    agreeing = settings_from_env(
        {
            "DATAVAULT_RECEIPT_ISSUER": "https://vault.example.com/",
            "DATAVAULT_PUBLIC_URL": "https://vault.example.com",
        }
    )
    assert agreeing.public_base_url == "https://vault.example.com"
    assert not hasattr(agreeing, "receipt_issuer")


def test_binding_every_interface_without_a_public_url_is_flagged() -> None:
    """Receipts' issuer and playback links would name http://0.0.0.0:8700 (the vault
    warns `public_url_unset` on start)."""
    assert settings_from_env({"DATAVAULT_HOST": "0.0.0.0"}).public_url_unusable
    assert settings_from_env({"DATAVAULT_HOST": "::"}).public_url_unusable
    assert not settings_from_env({}).public_url_unusable
    assert not settings_from_env({"DATAVAULT_HOST": "vault.internal"}).public_url_unusable
    assert not settings_from_env(
        {"DATAVAULT_HOST": "0.0.0.0", "DATAVAULT_PUBLIC_URL": "https://vault.example.com"}
    ).public_url_unusable
