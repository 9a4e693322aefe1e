"""Start-up shared by the server and the operator commands: find the database, migrate,
open the services. The CLI and `serve` find the same database and keys from the same
settings, also while `serve` is running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from crypto.providers import provider_from_uri
from crypto.providers.base import RootKeyProvider
from vault.blobs.base import BlobStore
from vault.blobs.factory import open_blob_store
from vault.config import DEFAULT_ROOT_KEY_FILE, Settings
from vault.db.database import Database
from vault.db.embedded import embedded_postgres_url
from vault.db.migrate import migrate
from vault.db.presence import check_vault_location, check_vault_schema
from vault.services.api_keys import ApiKeyService
from vault.services.deployment_secrets import DeploymentSecrets, load_deployment_secrets
from vault.services.holds import PgHoldCheck
from vault.services.keyring import KeyRing
from vault.services.root_epochs import sync_root_epochs

logger = structlog.get_logger("datavault.crypto")


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded PostgreSQL in the data directory (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded_postgres_url(settings.data_dir)


def prepare_database(settings: Settings, *, create_vault: bool = False) -> str:
    """The database URL, migrated. Only `serve`, `migrate` and `tenant create` pass
    create_vault=True; for every other command a missing vault is NoVault (exit 2), found
    before a data directory, an embedded PostgreSQL or a schema is created."""
    if not create_vault:
        check_vault_location(settings)
    url = database_url(settings)
    if not create_vault:
        check_vault_schema(url)
    asyncio.run(migrate(url))
    return url


def open_root_key(settings: Settings) -> RootKeyProvider:
    """The configured root-key provider. Until 2026-11-26 the default key file of a relative
    data directory landed at ``<data dir>/<data dir>/root.key``; such a file is moved to
    ``<data dir>/root.key`` first, so upgrading never silently starts a new root key."""
    if settings.root_key is None and not settings.data_dir.is_absolute():
        misplaced = settings.data_dir / settings.data_dir / DEFAULT_ROOT_KEY_FILE
        documented = settings.data_dir / DEFAULT_ROOT_KEY_FILE
        if misplaced.exists() and not documented.exists():
            misplaced.rename(documented)
            logger.warning("root_key_file_moved", to=str(documented), was=str(misplaced))
    return provider_from_uri(settings.root_key_uri, settings.data_dir)


@dataclass(frozen=True)
class OperatorContext:
    settings: Settings
    db: Database
    root: RootKeyProvider
    api_keys: ApiKeyService
    blobs: BlobStore
    secrets: DeploymentSecrets
    keyring: KeyRing


@asynccontextmanager
async def operator_context(settings: Settings, url: str) -> AsyncIterator[OperatorContext]:
    db = await Database.connect(url, max_size=2)
    blobs = open_blob_store(settings)
    try:
        root = open_root_key(settings)
        await sync_root_epochs(db, root)
        secrets = await load_deployment_secrets(db, root)
        yield OperatorContext(
            settings,
            db,
            root,
            ApiKeyService(db, secrets.api_key_pepper),
            blobs,
            secrets,
            KeyRing(root, PgHoldCheck()),
        )
    finally:
        await blobs.close()
        await db.close()
