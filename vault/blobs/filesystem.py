"""Blob store on the local filesystem (the embedded default, inside the data directory).

Writes go to a temporary name in the same directory (`<name>.<uuid>.partial`), are
fsynced, then renamed, and the directory is fsynced: a crash never leaves a half object
under a real key, only a `.partial` file that list_incomplete finds for the sweeper.
Errors never carry the path (it embeds tenant and subject ids): OSError messages do, so
they are replaced, not chained.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import re
import stat
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from vault.blobs.base import (
    TEMP_SUFFIX,
    BlobNotFound,
    BlobStoreError,
    Buffer,
    IncompleteUpload,
    check_piece_bytes,
    is_valid_key,
)
from vault.blobs.thread_reads import read_on_a_thread

T = TypeVar("T")

# Keys are paths of safe segments: no '..', no absolute paths, nothing outside the root.
# A temp file is `<name>.<32 hex>.partial` beside its target.
_TEMP_NAME = re.compile(r"^(?P<name>.+)\.[0-9a-f]{32}\.partial$")

# Reads are streamed in pieces of this size: bounded memory for any object, and few
# enough thread hops that throughput stays close to the disk's.
READ_CHUNK_BYTES = 1024 * 1024
# A read of up to this many bytes in all (a range read: one or two segments) whose
# bytes are all in the page cache is done on the event loop (memory copies of ~0.1 ms);
# a longer one, or one that would wait for the disk, on a thread.
INLINE_READ_MAX_BYTES = 2 * 1024 * 1024 + 64
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None
# The thread a long read (get_range_mapped) runs on.
READ_THREAD_NAME = "blob-file-get"
# put_stream coalesces small chunks up to this size before a write, so a stream of tiny
# chunks does not cost one thread hop each; memory stays below this plus one chunk.
WRITE_BUFFER_BYTES = 1024 * 1024
# put_stream keeps up to this many writes queued on its worker thread.
WRITES_AHEAD = 2
# A streamed write asks the kernel to start writing back every this many bytes (Linux
# sync_file_range, SYNC_FILE_RANGE_WRITE: starts the disk writes, does not wait for
# them), so the disk works while the upload is still arriving and the fsync before the
# rename finds little left to do instead of a whole object's dirty pages. Durability
# still rests on that fsync alone.
WRITEBACK_EVERY_BYTES = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _find_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _find_sync_file_range()

_DIR_MODE = 0o700
_FILE_MODE = 0o600


def _make_parents(root: Path, path: Path) -> None:
    """Create the directories between `root` and `path`, each 0700 (mkdir's
    `parents=True` would create the intermediate ones with the umask's mode)."""
    current = root
    for part in path.relative_to(root).parts[:-1]:
        current = current / part
        with contextlib.suppress(FileExistsError):
            current.mkdir(mode=_DIR_MODE)


def _os_failure(action: str, exc: OSError) -> BlobStoreError:
    code = errno.errorcode.get(exc.errno or 0, "unknown")
    return BlobStoreError(f"filesystem blob store {action} failed ({code})")


@contextlib.contextmanager
def _read_errors() -> Iterator[None]:
    """A read's OSError as the store reports it: a missing blob is BlobNotFound, any other
    failure the store's (its errno only, never the path)."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise BlobNotFound("no such blob") from None
    except OSError as exc:
        raise _os_failure("read", exc) from None


def _open_blob(path: str | Path) -> int:
    """A descriptor of the blob at `path`, opened for reading, if it is a regular file;
    every read of a blob opens through here. O_NONBLOCK: a named pipe (or a device) put
    where a blob was would make a plain open wait for a writer, and a seek opens on the
    event loop (red team 19, finding 2); for a regular file the flag changes nothing.
    Anything that is not a regular file is refused (as no such blob) before a read."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


class FilesystemBlobStore:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self._root = root
        self._root_text = str(root)
        root.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        self._scratch = bytearray(INLINE_READ_MAX_BYTES)  # see _read_cached

    @property
    def root(self) -> Path:
        return self._root

    @property
    def location(self) -> str:
        return f"file:{self._root.resolve()}"

    def _path(self, key: str) -> Path:
        if not is_valid_key(key):
            raise BlobStoreError("invalid blob key")
        return self._root / key

    def _path_text(self, key: str) -> str:
        """`_path` as a string, without pathlib's parsing (a seek's read, per request)."""
        if not is_valid_key(key):
            raise BlobStoreError("invalid blob key")
        return os.path.join(self._root_text, key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self._path(key), data)

    async def put_retained(self, key: str, data: bytes, retain_until: datetime) -> bool:
        # A filesystem cannot refuse its owner: nothing enforces the retention here.
        await self.put(key, data)
        return False

    async def retention_enforced(self) -> bool:
        return False

    def _put(self, path: Path, data: bytes) -> None:
        writer = _TempWriter(self._root, path)
        try:
            writer.open()
            writer.write(data)
            writer.commit()
        except OSError as exc:
            writer.discard()
            raise _os_failure("write", exc) from None

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes | bytearray]) -> int:
        return await self._put_stream(key, chunks)

    async def put_stream_made(self, key: str, makers: AsyncIterable[Callable[[], Buffer]]) -> int:
        """As put_stream, of the bytes each maker returns, called in order on the thread
        that writes them (blobs/base.py WritesOnAThread): an upload seals its segments
        there (issue 19, sixth round), one thread and one hand-off per segment where
        sealing on a thread of the upload's own and writing on this one took two."""
        return await self._put_stream(key, makers)

    async def _put_stream(
        self, key: str, items: AsyncIterable[bytes | bytearray | Callable[[], Buffer]]
    ) -> int:
        """put_stream of chunks, or put_stream_made of makers (callables)."""
        path = self._path(key)
        writer = _TempWriter(self._root, path)
        loop = asyncio.get_running_loop()
        # One worker thread per upload runs every file operation in order, so the
        # cleanup after a cancellation runs only once the write in flight has finished
        # (asyncio.to_thread would leave that write running beside the cleanup).
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-put")

        def run(fn: Callable[..., None], *args: object) -> asyncio.Future[None]:
            return loop.run_in_executor(worker, functools.partial(fn, *args))

        size = 0
        # Write-behind: up to WRITES_AHEAD writes are queued on the worker thread (which
        # keeps them in order) while the next piece is produced, so the thread goes from
        # one write to the next without waiting for the event loop to hand it more.
        # Memory: the writes queued plus the buffer.
        writing: collections.deque[asyncio.Future[None]] = collections.deque()

        async def submit(data: Buffer | Callable[[], Buffer]) -> None:
            while len(writing) >= WRITES_AHEAD:
                await writing.popleft()
            writing.append(run(writer.write_made if callable(data) else writer.write, data))

        try:
            await run(writer.open)
            pending = bytearray()
            async for chunk in items:
                if callable(chunk):
                    await submit(chunk)  # its size is counted by the writer
                    continue
                size += len(chunk)
                if not pending and len(chunk) >= WRITE_BUFFER_BYTES:
                    await submit(chunk)
                    continue
                pending += chunk
                if len(pending) >= WRITE_BUFFER_BYTES:
                    await submit(bytes(pending))
                    pending = bytearray()
            if pending:
                await submit(bytes(pending))
            while writing:
                await writing.popleft()
            await run(writer.commit)
            size = writer.written
        except BaseException as exc:
            # Iterator failure, cancellation or I/O error: remove the temp file (or the
            # object, if the rename was under way), then re-raise. The cleanup is queued
            # behind the operation in flight; if this task is cancelled again while
            # waiting, it still runs. If it fails, list_incomplete finds the temp file.
            # Writes still queued run (or fail) before it; their outcome is moot.
            for queued in writing:
                queued.add_done_callback(_ignore_outcome)
            with contextlib.suppress(OSError):
                await run(writer.discard)
            if isinstance(exc, OSError):
                raise _os_failure("write", exc) from None
            raise
        finally:
            worker.shutdown(wait=False)
        return size

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        with _read_errors():
            return await asyncio.to_thread(self._read_whole, path)

    @classmethod
    def _read_whole(cls, path: Path) -> bytes:
        with cls._open_for_read(path) as handle:
            return handle.read()

    async def get_range(
        self, key: str, start: int = 0, end: int | None = None, *, piece_bytes: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        if start < 0 or (end is not None and end < start):
            raise ValueError("invalid byte range")
        piece = check_piece_bytes(piece_bytes, READ_CHUNK_BYTES)
        path = self._path(key)
        # A short read (a seek) may be read on the event loop; a long one always goes to
        # a thread, where the copies run beside the loop's work.
        small = end is not None and end + 1 - start <= INLINE_READ_MAX_BYTES
        # Each piece opens, reads and closes the file: no descriptor stays open across a
        # yield, so a reader abandoned half way (client gone, integrity failure) leaks
        # nothing, whenever its generator is finalised.
        position = start
        while end is None or position <= end:
            want = piece if end is None else min(piece, end + 1 - position)
            with _read_errors():
                data = self._read_cached(path, want, position) if small else None
                if data is None:
                    data = await asyncio.to_thread(self._read_at, path, want, position)
            if not data:
                break
            position += len(data)
            yield data

    async def get_range_mapped(
        self,
        key: str,
        start: int,
        end: int | None,
        *,
        piece_bytes: int,
        each: Callable[[bytes], bytes],
    ) -> AsyncGenerator[bytes, None]:
        """As get_range in pieces of `piece_bytes`, read by a thread of the read's own
        (thread_reads.py) that passes each through `each` and hands on what it returns;
        what it raises ends the read and is raised here. A download opens its segments
        there (issue 19, sixth round): where each piece was a trip to the default pool
        to be read, a read-ahead task's queue, a trip to an opening thread and back, it
        is now one hand-off from the reading thread to the event loop. The file stays
        open on that thread until the read ends or is closed."""
        if start < 0 or (end is not None and end < start):
            raise ValueError("invalid byte range")
        piece = check_piece_bytes(piece_bytes, READ_CHUNK_BYTES)
        path = self._path(key)

        def pieces() -> Iterator[bytes]:
            with _read_errors():
                handle = self._open_for_read(path)
            with handle:
                position = start
                while end is None or position <= end:
                    want = piece if end is None else min(piece, end + 1 - position)
                    try:
                        data = os.pread(handle.fileno(), want, position)
                    except OSError as exc:
                        raise _os_failure("read", exc) from None
                    if not data:
                        return
                    position += len(data)
                    yield data

        read = read_on_a_thread(pieces, thread_name=READ_THREAD_NAME, each=each)
        async with contextlib.aclosing(read) as opened:
            async for plaintext in opened:
                yield plaintext

    @classmethod
    def _read_at(cls, path: Path, size: int, offset: int) -> bytes:
        with cls._open_for_read(path) as handle:
            return os.pread(handle.fileno(), size, offset)

    def _read_cached(self, path: Path, size: int, offset: int) -> bytes | None:
        """The bytes, read on the event loop, if all of them are in the page cache
        (preadv2 with RWF_NOWAIT never waits for the disk); else None, and the caller
        reads on a thread. A seek in a recording played again is then no thread hop.
        Read into one scratch buffer per store (the event loop's alone), then copied out
        once: no fresh, page-faulting megabyte per read."""
        buffer = self._cached_view(str(path), size, offset)
        return None if buffer is None else bytes(buffer)

    def with_cached_range(
        self, key: str, start: int, end: int, use: Callable[[memoryview], T]
    ) -> T | None:
        """blobs.base.ReadsCachedInline: `use` gets the scratch buffer itself (no copy),
        which the next read on this thread overwrites."""
        if start < 0 or end < start:
            raise ValueError("invalid byte range")
        with _read_errors():
            buffer = self._cached_view(self._path_text(key), end + 1 - start, start)
        return None if buffer is None else use(buffer)

    def _cached_view(self, path: str, size: int, offset: int) -> memoryview | None:
        """`size` bytes at `offset` read into the scratch buffer, if all are in the page
        cache; a view of them there (valid until the next read on this thread)."""
        if _RWF_NOWAIT is None or size > INLINE_READ_MAX_BYTES:
            return None
        # A descriptor, not a file object: none per seek (issue 19, sixth round).
        descriptor = _open_blob(path)
        try:
            buffer = memoryview(self._scratch)[:size]
            try:
                got = os.preadv(descriptor, [buffer], offset, _RWF_NOWAIT)
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    return None  # a filesystem without it: the thread reads
                raise
        finally:
            os.close(descriptor)
        if got < size:
            return None  # not all cached, or the end of the file: the thread knows
        return buffer

    @staticmethod
    def _open_for_read(path: Path) -> BinaryIO:
        return os.fdopen(_open_blob(path), "rb", buffering=0)

    async def size(self, key: str) -> int:
        path = self._path(key)
        try:
            info = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound("no such blob") from None
        except OSError as exc:
            raise _os_failure("stat", exc) from None
        if not stat.S_ISREG(info.st_mode):
            raise BlobNotFound("no such blob")
        return info.st_size

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink, True)
        except (IsADirectoryError, NotADirectoryError):
            return  # no object under that key
        except OSError as exc:
            raise _os_failure("delete", exc) from None

    async def list_keys(
        self, prefix: str, *, start_after: str = "", limit: int | None = None
    ) -> list[str]:
        found = sorted(
            key
            for key, is_temp in await asyncio.to_thread(self._walk, prefix)
            if not is_temp and key.startswith(prefix) and key > start_after
        )
        return found if limit is None else found[:limit]

    def _walk(self, prefix: str) -> list[tuple[str, bool]]:
        """(relative path, is a temp file) for every file under the directory that the
        prefix's complete segments name (the whole root for an unsegmented prefix)."""
        directory = self._root
        if "/" in prefix:
            head = prefix.rsplit("/", 1)[0]
            if not is_valid_key(head):
                return []
            directory = self._root / head
        found: list[tuple[str, bool]] = []
        for current, _dirs, files in os.walk(directory):
            base = Path(current)
            for file_name in files:
                relative = (base / file_name).relative_to(self._root).as_posix()
                found.append((relative, file_name.endswith(TEMP_SUFFIX)))
        return found

    async def list_incomplete(self, older_than: datetime) -> list[IncompleteUpload]:
        cutoff = older_than.timestamp()

        def scan() -> list[IncompleteUpload]:
            uploads = []
            for relative, is_temp in self._walk(""):
                if not is_temp:
                    continue
                try:
                    mtime = (self._root / relative).stat().st_mtime
                except FileNotFoundError:
                    continue  # finished or aborted meanwhile
                if mtime >= cutoff:
                    continue
                directory, _, file_name = relative.rpartition("/")
                match = _TEMP_NAME.match(file_name)
                name = match["name"] if match else file_name.removesuffix(TEMP_SUFFIX)
                uploads.append(
                    IncompleteUpload(
                        key=f"{directory}/{name}" if directory else name,
                        handle=relative,
                        started_at=datetime.fromtimestamp(mtime, UTC),
                    )
                )
            return sorted(uploads, key=lambda upload: upload.handle)

        try:
            return await asyncio.to_thread(scan)
        except OSError as exc:
            raise _os_failure("list", exc) from None

    async def abort_incomplete(self, upload: IncompleteUpload) -> None:
        handle = upload.handle
        if not handle.endswith(TEMP_SUFFIX) or not is_valid_key(handle.removesuffix(TEMP_SUFFIX)):
            raise BlobStoreError("invalid incomplete-upload handle")
        try:
            await asyncio.to_thread((self._root / handle).unlink, True)
        except OSError as exc:
            raise _os_failure("abort", exc) from None

    async def ping(self) -> bool:
        return await asyncio.to_thread(
            lambda: self._root.is_dir() and os.access(self._root, os.W_OK)
        )

    async def close(self) -> None:
        """Nothing to release; here so both stores can be closed the same way."""


def _ignore_outcome(future: asyncio.Future[None]) -> None:
    """Mark a future's exception as seen (asyncio logs one that never is)."""
    if not future.cancelled():
        future.exception()


class _TempWriter:
    """One write: a 0600 temp file beside the target, fsynced and renamed into place,
    then the directory fsynced so the rename survives a crash. Blocking; callers run it
    in a thread."""

    def __init__(self, root: Path, path: Path) -> None:
        self._root = root
        self._path = path
        self._temp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        self._handle: BinaryIO | None = None
        self._committed = False
        self._written = 0  # bytes written so far
        self._flushed = 0  # bytes whose writeback has been started

    def open(self) -> None:
        _make_parents(self._root, self._path)
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        self._handle = os.fdopen(fd, "wb", buffering=0)

    @property
    def written(self) -> int:
        return self._written

    def write_made(self, make: Callable[[], Buffer]) -> None:
        self.write(make())

    def write(self, data: Buffer) -> None:
        assert self._handle is not None
        view = memoryview(data)
        while view:  # an unbuffered write may be short
            written = self._handle.write(view) or 0
            view = view[written:]
            self._written += written
        if _sync_file_range is not None and self._written - self._flushed >= WRITEBACK_EVERY_BYTES:
            # A hint only: if it fails, the fsync in commit does all the work.
            _sync_file_range(
                self._handle.fileno(),
                self._flushed,
                self._written - self._flushed,
                _SYNC_FILE_RANGE_WRITE,
            )
            self._flushed = self._written

    def commit(self) -> None:
        assert self._handle is not None
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._temp, self._path)
        self._committed = True
        fd = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Remove what this write left: the temp file, or the object itself when the
        caller gave up (cancelled) while the rename was already under way."""
        if self._handle is not None:
            self._handle.close()
        self._temp.unlink(missing_ok=True)
        if self._committed:
            self._path.unlink(missing_ok=True)
