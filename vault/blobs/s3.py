"""Blob store on S3-compatible object storage (AWS S3, MinIO, Ceph, SeaweedFS).

boto3's client is synchronous and thread-safe, so every call runs in a worker thread.
Vendor errors become BlobStoreError / BlobNotFound whose messages name the operation and
the S3 error code, never the key (keys embed tenant and subject ids). botocore's own
messages can carry the request URL, so they are replaced, not chained.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vault.blobs.base import (
    BlobNotFound,
    BlobStoreError,
    IncompleteUpload,
    check_piece_bytes,
    is_valid_key,
)
from vault.blobs.s3_reader import read_in_thread

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

_T = TypeVar("_T")

# Multipart part size. S3 needs every part but the last to be ≥ 5 MiB; some compatible
# stores (R2) also need them all equal, so every part but the last is exactly this size.
PART_SIZE_BYTES = 8 * 1024 * 1024
# Parts of one upload sent at once: a part's round trip overlaps reading and sending the
# next (one at a time, an upload ran at 0.63 of boto3's own on loopback). put_stream holds
# these parts plus the one it is filling: (PARTS_IN_FLIGHT + 1) x PART_SIZE_BYTES is its
# memory bound per upload.
PARTS_IN_FLIGHT = 2
# S3 allows at most 10,000 parts: with 8 MiB parts an object can reach 78 GiB, well above
# the vault's default artefact limit (20 GiB).
MAX_PARTS = 10_000
# Ranged reads hand the body on in pieces of this size.
READ_CHUNK_BYTES = 1024 * 1024
# Connections the client keeps open to the store. A streamed read holds one for its whole
# length (s3_reader.py), so with botocore's default of 10 the 11th download at once and
# every later one opened a connection that urllib3 then threw away ("Connection pool is
# full"): a TCP (and TLS) handshake per download. Idle pooled connections cost a socket.
S3_POOL_CONNECTIONS = 64
# Fail fast when the store is down or slow instead of hanging a request: a bounded number
# of attempts with standard backoff, and socket timeouts on connect and read.
CLIENT_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=S3_POOL_CONNECTIONS,
)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# What S3 and compatible stores answer for a bucket without Object Lock.
_NO_OBJECT_LOCK_CODES = frozenset(
    {
        "ObjectLockConfigurationNotFoundError",
        "ObjectLockConfigurationNotFound",
        "NoSuchObjectLockConfiguration",
        "404",
        "NotImplemented",
    }
)
_SAFE_CODE = re.compile(r"^[A-Za-z0-9.]{1,64}$")


def _error_code(exc: ClientError) -> str:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code if _SAFE_CODE.match(code) else "unknown"


class S3StoreError(BlobStoreError):
    """An S3 failure; `code` is the S3 error code or the botocore error's class name."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(f"s3 {operation} failed ({code})")
        self.code = code


class S3ObjectNotFound(BlobNotFound, S3StoreError):
    """S3 answered 404 / NoSuchKey."""


def _failure(operation: str, exc: Exception) -> S3StoreError:
    """Our error for a vendor error: the operation and the error's code or class only."""
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        if code in _NOT_FOUND_CODES:
            return S3ObjectNotFound(operation, code)
        return S3StoreError(operation, code)
    return S3StoreError(operation, type(exc).__name__)


class S3BlobStore:
    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        session: boto3.session.Session | None = None,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            raise ValueError("an S3 key prefix must end with '/'")
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"s3:{endpoint_url or 'aws'}/{bucket}/{prefix}"
        self._object_lock: bool | None = None
        self._region = region
        config = CLIENT_CONFIG
        if endpoint_url:
            # S3-compatible stores on a host name of their own (MinIO, Ceph, SeaweedFS)
            # rarely answer virtual-host bucket names.
            config = config.merge(Config(s3={"addressing_style": "path"}))
        # Credentials come from boto3's usual chain (environment, profile, instance role).
        # A shared `session` saves loading botocore's service models again (tests).
        self._client: S3Client = (session or boto3.session.Session()).client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    def _key(self, key: str) -> str:
        if not is_valid_key(key):
            raise BlobStoreError("invalid blob key")
        return self.prefix + key

    async def _call(self, operation: str, fn: Callable[..., _T], **kwargs: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(operation, exc) from None

    async def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        await self._call("put", self._client.put_object, Bucket=self.bucket, Key=name, Body=data)

    async def put_retained(self, key: str, data: bytes, retain_until: datetime) -> bool:
        if not await self._object_lock_enabled():
            await self.put(key, data)
            return False
        await self._call(
            "put",
            self._client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=retain_until,
        )
        return True

    async def retention_enforced(self) -> bool:
        return await self._object_lock_enabled()

    async def _object_lock_enabled(self) -> bool:
        # Asked once: a bucket's Object Lock can be turned on only at creation (or by
        # support), so the answer does not change under a running vault.
        if self._object_lock is None:
            try:
                found = await asyncio.to_thread(
                    self._client.get_object_lock_configuration, Bucket=self.bucket
                )
                config = found.get("ObjectLockConfiguration", {})
                self._object_lock = config.get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                if _error_code(exc) not in _NO_OBJECT_LOCK_CODES:
                    raise _failure("object lock", exc) from None
                self._object_lock = False
            except BotoCoreError as exc:
                raise _failure("object lock", exc) from None
        return self._object_lock

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes | bytearray]) -> int:
        writer = _MultipartWriter(self._client, self.bucket, self._key(key))
        # The upload's own threads run its S3 calls: up to PARTS_IN_FLIGHT parts at once,
        # the create and the completion alone. Every call handed to them is kept, so the
        # rollback after a failure or cancellation runs only once all of them have ended:
        # an upload being created, a part landing or the final PutObject/Complete
        # succeeding after the rollback would otherwise leave data behind.
        workers = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="blob-s3-put")
        submitted: list[concurrent.futures.Future[None]] = []

        def start(fn: Callable[..., None], *args: object) -> asyncio.Future[None]:
            call = workers.submit(_as_store_error, fn, *args)
            submitted.append(call)
            return asyncio.wrap_future(call)

        sending: set[asyncio.Future[None]] = set()
        size = 0
        try:
            # A full part is handed on as it is (no copy) and a new one begins.
            buffer, filled = bytearray(PART_SIZE_BYTES), 0
            async for chunk in chunks:
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    take = min(len(view), PART_SIZE_BYTES - filled)
                    buffer[filled : filled + take] = view[:take]
                    filled += take
                    view = view[take:]
                    if filled == PART_SIZE_BYTES:
                        if not writer.started:
                            await start(writer.start)
                        while len(sending) >= PARTS_IN_FLIGHT:
                            sending = await _first_sent(sending)
                        part = writer.next_part()
                        sending.add(start(writer.upload_part, part, _Handover(buffer)))
                        buffer, filled = bytearray(PART_SIZE_BYTES), 0
            while sending:
                sending = await _first_sent(sending)
            del buffer[filled:]
            await start(writer.finish, _Handover(buffer))
        except BaseException:
            # On the upload's threads after every call handed to them has ended; shielded,
            # so cancelling this task again does not call it off. A failed abort leaves the
            # upload to the sweeper.
            undo = workers.submit(_as_store_error, _roll_back_after, writer, submitted)
            with contextlib.suppress(BlobStoreError):
                await asyncio.shield(asyncio.wrap_future(undo))
            raise
        finally:
            workers.shutdown(wait=False)
        return size

    async def get(self, key: str) -> bytes:
        request = {"Bucket": self.bucket, "Key": self._key(key)}
        return await self._call("get", self._read_whole, **request)

    def _read_whole(self, **request: Any) -> bytes:
        """One small object or range whole, in one trip to a pool thread: a thread of
        the read's own (s3_reader.py) costs more than it saves for one piece."""
        body = self._client.get_object(**request)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    async def get_range(
        self, key: str, start: int = 0, end: int | None = None, *, piece_bytes: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        if start < 0 or (end is not None and end < start):
            raise ValueError("invalid byte range")
        read_size = check_piece_bytes(piece_bytes, READ_CHUNK_BYTES)
        request = self._range_request(key, start, end)
        ranged = "Range" in request

        if end is not None and end - start < read_size:
            # One piece at most (a player's seek, a stream header): read in one trip.
            try:
                piece = await self._call("get", self._read_checked, ranged=ranged, **request)
            except S3StoreError as exc:
                if exc.code == "InvalidRange":
                    return  # the range starts at or past the end: no bytes
                raise
            if piece:
                yield piece
            return

        async with aclosing(self._read_in_thread(request, read_size, None)) as pieces:
            async for piece in pieces:
                yield piece

    async def get_range_mapped(
        self,
        key: str,
        start: int,
        end: int | None,
        *,
        piece_bytes: int,
        each: Callable[[bytes], bytes],
    ) -> AsyncGenerator[bytes, None]:
        """As get_range in pieces of `piece_bytes`, each passed through `each` on the
        thread that read it (s3_reader.py), and what it returns handed out instead; what
        it raises ends the read and is raised here. For reads of several pieces: a
        thread of the read's own even for one."""
        if start < 0 or (end is not None and end < start):
            raise ValueError("invalid byte range")
        read_size = check_piece_bytes(piece_bytes, READ_CHUNK_BYTES)
        request = self._range_request(key, start, end)
        async with aclosing(self._read_in_thread(request, read_size, each)) as pieces:
            async for piece in pieces:
                yield piece

    def _range_request(self, key: str, start: int, end: int | None) -> dict[str, Any]:
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start > 0 or end is not None:
            # Without a Range header for the whole object: S3 answers "bytes=0-" on an
            # empty object with 416.
            request["Range"] = f"bytes={start}-{'' if end is None else end}"
        return request

    def _read_in_thread(
        self, request: dict[str, Any], read_size: int, each: Callable[[bytes], bytes] | None
    ) -> AsyncGenerator[bytes, None]:
        """One thread of the read's own sends the GET and reads the body ahead of the
        consumer (s3_reader.py); it stops when the generator is closed."""
        ranged = "Range" in request

        def check(response: dict[str, Any]) -> None:
            if ranged and not response.get("ContentRange"):
                raise S3StoreError("get", "RangeIgnored")

        return read_in_thread(
            self._client.get_object,
            request,
            read_size,
            lambda exc: _failure("get", exc),
            check,
            each=each,
        )

    def _read_checked(self, ranged: bool, **request: Any) -> bytes:
        response = self._client.get_object(**request)
        body = response["Body"]
        try:
            if ranged and not response.get("ContentRange"):
                raise S3StoreError("get", "RangeIgnored")
            return body.read()
        finally:
            body.close()

    async def size(self, key: str) -> int:
        head = await self._call(
            "size", self._client.head_object, Bucket=self.bucket, Key=self._key(key)
        )
        return head["ContentLength"]

    async def delete(self, key: str) -> None:
        with contextlib.suppress(BlobNotFound):
            await self._call(
                "delete", self._client.delete_object, Bucket=self.bucket, Key=self._key(key)
            )

    async def list_keys(
        self, prefix: str, *, start_after: str = "", limit: int | None = None
    ) -> list[str]:
        full = self.prefix + prefix
        # No stored key equals the store's own prefix, so starting after it lists all.
        after = self.prefix + start_after

        def collect() -> list[str]:
            keys: list[str] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=full,
                StartAfter=after,
                PaginationConfig={} if limit is None else {"MaxItems": limit},
            )
            for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", []))
            return keys if limit is None else keys[:limit]

        keys = await self._call("list", collect)
        return sorted(key.removeprefix(self.prefix) for key in keys)

    async def list_incomplete(self, older_than: datetime) -> list[IncompleteUpload]:
        def collect() -> list[IncompleteUpload]:
            found = []
            for page in self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                for upload in page.get("Uploads", []):
                    started = upload["Initiated"]
                    if started < older_than:
                        found.append(
                            IncompleteUpload(
                                key=upload["Key"].removeprefix(self.prefix),
                                handle=upload["UploadId"],
                                started_at=started,
                            )
                        )
            return found

        uploads = await self._call("list incomplete", collect)
        return sorted(uploads, key=lambda upload: (upload.key, upload.handle))

    async def abort_incomplete(self, upload: IncompleteUpload) -> None:
        try:
            await self._call(
                "abort",
                self._client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self.prefix + upload.key,
                UploadId=upload.handle,
            )
        except S3StoreError as exc:
            if exc.code != "NoSuchUpload":
                raise

    async def ping(self) -> bool:
        try:
            await self._call("ping", self._client.head_bucket, Bucket=self.bucket)
        except BlobStoreError:
            return False
        return True

    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist yet (tests, and `serve` on start)."""
        try:
            await self._call("head bucket", self._client.head_bucket, Bucket=self.bucket)
            return
        except BlobNotFound:
            pass
        request: dict[str, Any] = {"Bucket": self.bucket}
        if self._region and self._region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            await self._call("create bucket", self._client.create_bucket, **request)
        except S3StoreError as exc:
            if exc.code != "BucketAlreadyOwnedByYou":
                raise

    async def close(self) -> None:
        """Release the client's pooled connections."""
        await asyncio.to_thread(self._client.close)


def _as_store_error(fn: Callable[..., None], *args: object) -> None:
    """`fn(*args)` on an upload thread, with vendor errors replaced by ours."""
    try:
        fn(*args)
    except (ClientError, BotoCoreError) as exc:
        raise _failure("put", exc) from None


async def _first_sent(sending: set[asyncio.Future[None]]) -> set[asyncio.Future[None]]:
    """Wait for one of the parts being sent; raise its failure. The parts still going."""
    done, sending = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
    for sent in done:
        sent.result()
    return sending


class _Handover:
    """A part's bytes, given to the thread that sends them: once it has taken them, only
    it holds them. (Passed as they are, the executor's work item would keep them alive
    until its thread got round to dropping it, a part more per upload at times.)"""

    __slots__ = ("_data",)

    def __init__(self, data: bytearray) -> None:
        self._data: bytearray | None = data

    def take(self) -> bytearray:
        data, self._data = self._data, None
        assert data is not None, "a part is taken once"
        return data


def _roll_back_after(
    writer: _MultipartWriter, calls: list[concurrent.futures.Future[None]]
) -> None:
    concurrent.futures.wait(calls)
    writer.roll_back()


class _MultipartWriter:
    """One streamed write: a multipart upload of PART_SIZE_BYTES parts, or a single
    PutObject when the object is smaller than one part (zero bytes included).
    Blocking; put_stream runs `start` and `finish` alone and parts in parallel, each on
    one of the upload's threads."""

    def __init__(self, client: S3Client, bucket: str, name: str) -> None:
        self._client = client
        self._bucket = bucket
        self._name = name
        self._upload_id: str | None = None
        self._numbered = 0
        # Filled from several threads, one distinct part number each.
        self._etags: dict[int, str] = {}
        self._committed = False

    @property
    def started(self) -> bool:
        return self._upload_id is not None

    def next_part(self) -> int:
        """The number of the next part, in the order the bytes came."""
        if self._numbered >= MAX_PARTS:
            raise S3StoreError("put", "TooManyParts")
        self._numbered += 1
        return self._numbered

    def start(self) -> None:
        created = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._name)
        self._upload_id = created["UploadId"]

    def upload_part(self, number: int, part: _Handover) -> None:
        self._send_part(number, part.take())

    def _send_part(self, number: int, body: bytearray) -> None:
        assert self._upload_id is not None
        result = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._name,
            UploadId=self._upload_id,
            PartNumber=number,
            # botocore takes a bytearray as it is (validate.py, httpchecksum.py); the
            # stubs name only bytes, and a copy would cost a part's size.
            Body=cast("bytes", body),
        )
        self._etags[number] = result["ETag"]

    def finish(self, last: _Handover) -> None:
        tail = last.take()
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._name, Body=cast("bytes", tail))
        else:
            if tail:
                self._send_part(self.next_part(), tail)
            parts: list[CompletedPartTypeDef] = [
                {"PartNumber": number, "ETag": self._etags[number]}
                for number in range(1, self._numbered + 1)
            ]
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._name,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._committed = True

    def roll_back(self) -> None:
        """Undo whatever got as far as the store: the upload, or the finished object
        when the caller was cancelled while the last call was already under way."""
        if self._committed:
            self._client.delete_object(Bucket=self._bucket, Key=self._name)
        elif self._upload_id is not None:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._name, UploadId=self._upload_id
            )
