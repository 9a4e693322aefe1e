"""The blob store a deployment's settings name."""

from __future__ import annotations

from vault.blobs.base import BlobStore
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import ConfigError, Settings


def open_blob_store(settings: Settings) -> BlobStore:
    if settings.s3_bucket:
        # The S3 adapter arrives with artefact storage; refuse rather than silently
        # writing to the local disk when the operator asked for S3.
        raise ConfigError("DATAVAULT_S3_BUCKET is set, but this version has no S3 blob store yet")
    return FilesystemBlobStore(settings.data_dir.resolve() / "blobs")
