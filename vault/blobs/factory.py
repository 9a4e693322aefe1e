"""The blob store a deployment's settings name."""

from __future__ import annotations

from vault.blobs.base import BlobStore
from vault.blobs.filesystem import FilesystemBlobStore
from vault.config import Settings


def open_blob_store(settings: Settings) -> BlobStore:
    """S3-compatible storage when a bucket is configured, else the filesystem store in
    the data directory. Opening does no I/O beyond creating the local directory."""
    if settings.s3_bucket:
        # Imported here: boto3 is a third of a process's start-up (every CLI command and
        # server), and a deployment on the filesystem store never needs it.
        from vault.blobs.s3 import S3BlobStore

        return S3BlobStore(
            settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
        )
    return FilesystemBlobStore(settings.data_dir.resolve() / "blobs")
