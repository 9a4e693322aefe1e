"""Settings: one frozen value built from flags and environment, handed to everything else."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting has a value the vault cannot use."""


DEFAULT_ROOT_KEY_FILE = "root.key"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".datavault")
    host: str = "127.0.0.1"
    port: int = 8700
    database_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    root_key: str | None = None
    trusted_proxies: tuple[IPNetwork, ...] = ()
    drain_seconds: float = 30.0
    backup_retention_days: int = 35
    epoch_days: int = 30
    # API.md, Tenant: closure destroys the tenant's keys after this delay (default 60 days).
    closure_delay_days: int = 60
    max_artefact_bytes: int = 20 * 1024**3
    log_level: str = "info"
    # API.md: more than 20 missing or wrong keys from one IP within a minute → 429.
    auth_failure_limit: int = 20
    auth_failure_window_seconds: float = 60.0
    db_pool_max: int = 20
    # An upload that sends nothing for this long is given up (408) and its key shredded,
    # so a stalled client cannot hold a connection and a half-written object forever.
    upload_idle_timeout_seconds: float = 60.0
    # How often a transfer confirms its keys; None: TRANSFER_RECHECK_SECONDS (10 s,
    # vault/services/transfers.py). Not an environment variable: the bound is the
    # product's (DESIGN.md: 60 s); tests shorten it so they take seconds.
    transfer_recheck_seconds: float | None = None
    # How often the erasure executor and the shred-ledger publisher look for work when
    # nothing woke them (NOTIFY, vault/services/wakeups.py); None: their own 2 s. Not an
    # environment variable: it is the fallback for a lost notification; tests lengthen
    # it to show that the wake-ups alone complete an erasure.
    erasure_poll_seconds: float | None = None
    # Where clients reach the vault (behind a TLS proxy: its https URL). Unset: the
    # bind address, http://<host>:<port>. The `issuer` of erasure receipts (where their
    # key set is found), the base of playback link URLs, and what decides the console
    # cookie's Secure flag.
    public_url: str | None = None
    # DESIGN.md, Access log: full client IPs for 90 days, then truncated to /24 or /48
    # until a year, then dropped; the chain covers a keyed hash, so it still verifies.
    access_log_ip_full_days: int = 90
    access_log_ip_keep_days: int = 365
    # DESIGN.md, shred ledger: an S3 bucket without Object Lock lets whoever can delete
    # objects cut the ledger's tail; the vault refuses one unless the operator accepts
    # that weaker guarantee (then a cut is only detected, where it can be).
    accept_unlocked_ledger: bool = False
    # DESIGN.md, Events for tenants: webhooks never reach private, loopback or link-local
    # addresses (the deployment's own network) unless the operator allows it; allowing it
    # also allows plain http:// receivers (inside such a network, often without TLS).
    webhook_allow_private_networks: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def root_key_uri(self) -> str:
        # Relative: the provider takes a relative file path from the data directory.
        return self.root_key or f"file:{DEFAULT_ROOT_KEY_FILE}"

    @property
    def public_base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def public_url_unusable(self) -> bool:
        """No DATAVAULT_PUBLIC_URL while binding every interface: the default would name
        http://0.0.0.0:<port> as the receipts' issuer and in playback links, which no
        client can open."""
        if self.public_url:
            return False
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    @property
    def cookies_secure(self) -> bool:
        """The console's cookies are Secure unless the public URL is plain HTTP on a
        loopback host (a trial run on 127.0.0.1, where a browser could not send a Secure
        cookie back). Decided from configuration, never from a request's Host header,
        which a proxy may rewrite (Host: 127.0.0.1 behind nginx dropped the flag). Plain
        HTTP on any other host still gets Secure: a console is not for plain HTTP on a
        network."""
        parts = urlsplit(self.public_base_url)
        return parts.scheme == "https" or not _is_loopback(parts.hostname or "")

    @property
    def uses_embedded_postgres(self) -> bool:
        return not self.database_url

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# (environment variable, Settings field, parser); the flags of serve/api/worker use the
# same fields, so the README's configuration table is this table.
def _int(value: str) -> int:
    return int(value)


def _float(value: str) -> float:
    return float(value)


def _path(value: str) -> Path:
    return Path(value)


def _str(value: str) -> str:
    return value


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError as exc:
        raise ConfigError(f"DATAVAULT_TRUSTED_PROXIES: {exc}") from None


ENVIRONMENT: tuple[tuple[str, str, Any], ...] = (
    ("DATAVAULT_DATA_DIR", "data_dir", _path),
    ("DATAVAULT_HOST", "host", _str),
    ("DATAVAULT_PORT", "port", _int),
    ("DATABASE_URL", "database_url", _str),
    ("DATAVAULT_S3_ENDPOINT_URL", "s3_endpoint_url", _str),
    ("DATAVAULT_S3_BUCKET", "s3_bucket", _str),
    ("DATAVAULT_S3_REGION", "s3_region", _str),
    ("DATAVAULT_ROOT_KEY", "root_key", _str),
    ("DATAVAULT_TRUSTED_PROXIES", "trusted_proxies", parse_networks),
    ("DATAVAULT_DRAIN_SECONDS", "drain_seconds", _float),
    ("DATAVAULT_BACKUP_RETENTION_DAYS", "backup_retention_days", _int),
    ("DATAVAULT_EPOCH_DAYS", "epoch_days", _int),
    ("DATAVAULT_CLOSURE_DELAY_DAYS", "closure_delay_days", _int),
    ("DATAVAULT_MAX_ARTEFACT_BYTES", "max_artefact_bytes", _int),
    ("DATAVAULT_LOG_LEVEL", "log_level", _str),
    ("DATAVAULT_AUTH_FAILURE_LIMIT", "auth_failure_limit", _int),
    ("DATAVAULT_AUTH_FAILURE_WINDOW_SECONDS", "auth_failure_window_seconds", _float),
    ("DATAVAULT_DB_POOL_MAX", "db_pool_max", _int),
    ("DATAVAULT_PUBLIC_URL", "public_url", _str),
    ("DATAVAULT_UPLOAD_IDLE_TIMEOUT_SECONDS", "upload_idle_timeout_seconds", _float),
    ("DATAVAULT_ACCESS_LOG_IP_FULL_DAYS", "access_log_ip_full_days", _int),
    ("DATAVAULT_ACCESS_LOG_IP_KEEP_DAYS", "access_log_ip_keep_days", _int),
    ("DATAVAULT_ACCEPT_UNLOCKED_LEDGER", "accept_unlocked_ledger", _bool),
    ("DATAVAULT_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "webhook_allow_private_networks", _bool),
)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, name, parse in ENVIRONMENT:
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        try:
            values[name] = parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{variable}: cannot use {raw!r}: {exc}") from None
    settings = Settings(**values)
    check_settings(settings)
    _check_retired(env, settings)
    return settings


# Receipts named their issuer with this variable before API.md made the issuer the
# deployment's public URL. A deployment that still sets it to something else would
# silently start signing another issuer: it is refused, saying what to set instead.
RETIRED_RECEIPT_ISSUER = "DATAVAULT_RECEIPT_ISSUER"


def _check_retired(env: Mapping[str, str], settings: Settings) -> None:
    issuer = env.get(RETIRED_RECEIPT_ISSUER)
    if issuer and issuer.rstrip("/") != settings.public_base_url:
        raise ConfigError(
            f"{RETIRED_RECEIPT_ISSUER} is no longer read: receipts name the deployment's "
            f"public URL as their issuer. Set DATAVAULT_PUBLIC_URL (now "
            f"{settings.public_base_url}) to where clients reach the vault and remove "
            f"{RETIRED_RECEIPT_ISSUER}"
        )


# The names README's configuration table documents for DATAVAULT_LOG_LEVEL.
LOG_LEVELS = ("debug", "info", "warning", "error")


def check_settings(settings: Settings) -> None:
    """Refuse values the vault cannot use, whether they came from the environment or flags."""
    if settings.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(
            f"DATAVAULT_LOG_LEVEL: cannot use {settings.log_level!r}: "
            f"use one of {', '.join(LOG_LEVELS)}"
        )
    if not 0 < settings.port < 65536:
        raise ConfigError("DATAVAULT_PORT must be between 1 and 65535")
    if settings.drain_seconds < 0:
        raise ConfigError("DATAVAULT_DRAIN_SECONDS must not be negative")
    if settings.backup_retention_days < 0 or settings.epoch_days < 0:
        raise ConfigError("day counts must not be negative")
    if settings.closure_delay_days < 1:
        raise ConfigError("DATAVAULT_CLOSURE_DELAY_DAYS must be at least 1")
    if settings.max_artefact_bytes < 1:
        raise ConfigError("DATAVAULT_MAX_ARTEFACT_BYTES must be positive")
    if not 0 <= settings.access_log_ip_full_days <= settings.access_log_ip_keep_days:
        raise ConfigError(
            "DATAVAULT_ACCESS_LOG_IP_FULL_DAYS must be between 0 and "
            "DATAVAULT_ACCESS_LOG_IP_KEEP_DAYS"
        )
    if settings.public_url is not None:
        parts = urlsplit(settings.public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("DATAVAULT_PUBLIC_URL must be an http:// or https:// URL")
        # It is a base that paths are appended to (playback links, the key set).
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError("DATAVAULT_PUBLIC_URL must be a base URL: no query, fragment or user")
    if settings.s3_endpoint_url and not settings.s3_bucket:
        raise ConfigError("DATAVAULT_S3_ENDPOINT_URL needs DATAVAULT_S3_BUCKET")
