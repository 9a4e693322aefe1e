"""Start-up shared by the server and the operator commands: find the database, migrate,
open the services. The CLI and `serve` find the same database and keys from the same
settings, also while `serve` is running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from crypto.providers import provider_from_uri
from crypto.providers.base import RootKeyProvider
from vault.blobs.base import BlobStore
from vault.blobs.factory import open_blob_store
from vault.config import Settings
from vault.db.database import Database
from vault.db.embedded import embedded_postgres_url
from vault.db.migrate import migrate
from vault.services.api_keys import ApiKeyService
from vault.services.deployment_secrets import DeploymentSecrets, load_deployment_secrets
from vault.services.holds import PgHoldCheck
from vault.services.keyring import KeyRing
from vault.services.root_epochs import sync_root_epochs


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded PostgreSQL in the data directory (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded_postgres_url(settings.data_dir)


def prepare_database(settings: Settings) -> str:
    url = database_url(settings)
    asyncio.run(migrate(url))
    return url


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
        root = provider_from_uri(settings.root_key_uri, settings.data_dir)
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
