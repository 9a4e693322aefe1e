"""End-to-end streaming of the vault's artefacts next to baselines measured in the same
run: upload and download throughput and server CPU per GiB against a bare Starlette app
(bench/bare_stream_app.py) streaming to and from a file, 64 KiB range reads at one client
against the same app, and (unless --skip-s3) the same transfers through S3 against boto3.

    python bench/stream_bench.py [--size-mib 1024] [--repeat 1] [--range-reads 400]
                                 [--skip-s3] [--s3-size-mib 256] [--py-spy DIR]

The vault runs as `python -m vault serve` in a temporary data directory: with DATABASE_URL
set it uses that PostgreSQL (a fresh database is not created: the schema is migrated in
place), otherwise the embedded one. Every server is its own process, stopped by PID at the
end. MB = 10**6 bytes; throughput is the best of --repeat runs, CPU the least.

Filesystem: the client (httpx) sends the same few precomputed 1 MiB buffers over and over
with a Content-Length and reads the download in 1 MiB pieces without keeping it. Both
servers make an upload durable (fsync) before answering. "CPU s/GiB" is the server
process's user + system time during the transfer, all threads (the vault's PostgreSQL
does a handful of statements per transfer and is not counted). Goal 1 of issue 19: vault
>= 0.8 of bare each way, and vault CPU per GiB <= (bare's + the cipher's) x 1.25, where
the cipher's is crypto/stream.py over the same bytes in this process (crypto_bench.py's
measurement, as CPU time). The SHA-256 and CRC-32 of the plaintext that the API returns
(and the export's ZIP needs) are printed beside it: they are work the bare app does not
do and the cipher figure does not hold. Peak RSS (VmHWM) is printed before and after.

Range reads: a --range-object-mib artefact and the same bytes as a file on the bare app;
--range-reads requests of 64 KiB at random offsets (the same offsets for both), one
client on one keep-alive connection (a small raw-socket client: httpx's own ~0.3 ms per
request would hide the bare app's time), the two servers in alternating halves. Latency
is request sent -> last byte received. Goal 2: vault p50 <= 2 ms, p99 <= 5 ms. Beside it
the CPU per read of the vault's process and of its embedded PostgreSQL during the vault's
halves (the machine's load moves it far less than latency).

S3: a SeaweedFS from tests/seaweed.py on loopback, a second vault with the S3 blob store
on it, and boto3 writing and reading the same bytes straight to SeaweedFS (a smaller
object by default, --s3-size-mib). Goal 3: vault download >= 0.9 of boto3's streamed get,
the vault's download read by the same HTTP stack boto3 reads SeaweedFS with (urllib3,
streamed, 1 MiB reads without decoding: `urllib3_download`), so both sides of the ratio
pay the same client. Beside it, as before issue 19's sixth round, the download read by
httpx (the table's vault row, as the filesystem section reads), whose client CPU per GiB
is printed beside boto3's (it runs on the same two cores and cost 2-4 times boto3's whole
read), and, for information, by a raw-socket client (`raw_download`). What bounds that
ratio on this machine (SeaweedFS's CPU per GiB, the vault's and its client's) is
measured by bench/s3_chain_bench.py.

--py-spy DIR records a py-spy profile (speedscope JSON) of the vault during each
filesystem transfer and the range reads, and of the S3 vault's transfers in DIR/s3
(needs py-spy on PATH).

Figures: see bench/README.md ("Issue 19" and "Capacity").
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import urllib3
from processes import cpu_seconds, free_port, postgres_cpu_seconds, stop, wait_ready

MIB = 1024 * 1024
GIB = 1024 * MIB
RANGE_BYTES = 64 * 1024
ROOT = Path(__file__).resolve().parent.parent
GOAL_THROUGHPUT = 0.8
GOAL_CPU_MARGIN = 1.25
GOAL_RANGE_P50_MS, GOAL_RANGE_P99_MS = 2.0, 5.0
GOAL_S3_DOWNLOAD = 0.9


def body(buffers: list[bytes], total: int) -> Iterator[bytes]:
    sent = 0
    index = 0
    while sent < total:
        chunk = buffers[index % len(buffers)][: total - sent]
        sent += len(chunk)
        index += 1
        yield chunk


def upload(
    http: httpx.Client, url: str, headers: dict[str, str], buffers: list[bytes], size: int
) -> httpx.Response:
    response = http.post(
        url,
        content=body(buffers, size),
        headers={**headers, "Content-Length": str(size), "Content-Type": "video/mp4"},
    )
    if response.status_code != 201:
        raise SystemExit(f"upload to {url} failed: {response.status_code} {response.text[:300]}")
    return response


def download(http: httpx.Client, url: str, headers: dict[str, str], size: int) -> None:
    received = 0
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            raise SystemExit(f"download from {url} failed: {response.status_code}")
        for piece in response.iter_raw(MIB):
            received += len(piece)
    if received != size:
        raise SystemExit(f"download from {url}: {received} bytes, expected {size}")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmHWM for process {pid}")


@contextmanager
def profiled(pid: int, target: Path | None) -> Iterator[None]:
    """py-spy records `pid` while the block runs, when a target file is given."""
    if target is None:
        yield
        return
    spy = subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-r", "250", "-f", "speedscope", "-o", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # attached before the work starts
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes its profile and exits
        spy.wait(timeout=60)


class Measured:
    """Best throughput (MB/s) and least server CPU (s/GiB) per direction over repeats."""

    def __init__(self) -> None:
        self.mb_s: dict[str, float] = {}
        self.cpu_s_per_gib: dict[str, float] = {}

    def timed(self, direction: str, pid: int, size: int, run: Callable[[], object]) -> object:
        cpu, started = cpu_seconds(pid), time.perf_counter()
        result = run()
        seconds, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
        self.mb_s[direction] = max(self.mb_s.get(direction, 0.0), size / seconds / 1e6)
        per_gib = cpu / (size / GIB)
        self.cpu_s_per_gib[direction] = min(self.cpu_s_per_gib.get(direction, per_gib), per_gib)
        return result


class Vault:
    """One `python -m vault serve` in its own data directory, with a tenant and an
    ingest+read key; stopped by PID."""

    def __init__(
        self, work: Path, name: str, size: int, extra_env: dict[str, str], root: Path = ROOT
    ) -> None:
        """`root`: the checkout whose vault runs (s3_chain_bench.py compares two)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAVAULT_")}
        port = free_port()
        env.update(
            DATAVAULT_DATA_DIR=str(work / name),
            DATAVAULT_PORT=str(port),
            DATAVAULT_HOST="127.0.0.1",
            DATAVAULT_MAX_ARTEFACT_BYTES=str(max(size * 2, 20 * 1024**3)),
            DATAVAULT_LOG_LEVEL="warning",
            **extra_env,
        )
        self.env = env
        self.root = root
        self.port = port
        # The embedded PostgreSQL's data directory (vault/db/embedded.py); None with
        # DATABASE_URL, whose server's CPU is not ours to count.
        self.pgdata = None if env.get("DATABASE_URL") else work / name / "postgres"
        self.url = f"http://127.0.0.1:{port}"
        self.log = work / f"{name}.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vault", "serve"],
                env=env,
                cwd=root,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.key: dict[str, str] = {}
        # The measuring process's CPU per GiB while it received the last download (httpx).
        self.client_cpu_s_per_gib = 0.0

    def prepare(self, http: httpx.Client) -> None:
        wait_ready(f"{self.url}/readyz", self.process, self.log, 120)
        created = subprocess.run(
            [sys.executable, "-m", "vault", "tenant", "create", "bench", "--json"],
            env=self.env, cwd=self.root, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise SystemExit(f"tenant create failed: {created.stderr}")
        admin = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
        made = http.post(
            f"{self.url}/v1/api-keys",
            json={"name": "bench", "scopes": ["ingest", "read"]},
            headers=admin,
        )
        if made.status_code != 201:
            raise SystemExit(f"key create failed: {made.text}")
        self.key = {"Authorization": f"Bearer {made.json()['secret']}"}

    @property
    def artefacts(self) -> str:
        return f"{self.url}/v1/subjects/bench-subject/artefacts"

    def store(self, http: httpx.Client, buffers: list[bytes], size: int) -> str:
        """Upload an artefact of `size` bytes; its URL."""
        response = upload(http, f"{self.artefacts}?category=recording", self.key, buffers, size)
        return f"{self.artefacts}/{response.json()['id']}"

    def round_trip(
        self, http: httpx.Client, buffers: list[bytes], size: int, into: Measured,
        spy: Path | None = None,
    ) -> None:  # fmt: skip
        """Upload then download one artefact of `size` bytes, then delete it."""
        pid = self.process.pid
        with profiled(pid, spy and spy / "vault-upload.json"):
            url = into.timed("upload", pid, size, lambda: self.store(http, buffers, size))
        assert isinstance(url, str)
        with profiled(pid, spy and spy / "vault-download.json"):
            client = cpu_seconds(os.getpid())
            into.timed(
                "download", pid, size, lambda: download(http, f"{url}/content", self.key, size)
            )
            self.client_cpu_s_per_gib = (cpu_seconds(os.getpid()) - client) / (size / GIB)
        http.delete(url, headers=self.key)


class Bare:
    """bench/bare_stream_app.py in its own process and directory."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.directory = work / "bare"
        self.directory.mkdir()
        log = work / "bare.log"
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "bare_stream_app.py"), str(self.port),
                 str(self.directory)],
                cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        wait_ready(f"{self.url}/healthz", self.process, log, 30)

    def round_trip(
        self, http: httpx.Client, buffers: list[bytes], size: int, into: Measured
    ) -> None:
        pid, url = self.process.pid, f"{self.url}/objects/big"
        into.timed("upload", pid, size, lambda: upload(http, url, {}, buffers, size))
        into.timed("download", pid, size, lambda: download(http, url, {}, size))
        (self.directory / "big").unlink()


def cipher_and_hash_cost(buffers: list[bytes], size: int) -> dict[str, float]:
    """CPU seconds per GiB in this process, least of three: crypto/stream.py sealing and
    opening `size` bytes in 1 MiB segments, each result dropped at once (as crypto_bench.py
    measures it), and SHA-256 + CRC-32 of the same bytes."""
    sys.path.insert(0, str(ROOT))
    from crypto_bench import CONTEXT, agen, drain

    from crypto.secrets import generate_key
    from crypto.stream import decrypt_stream, encrypt_stream
    from vault.services.artefact_meter import UploadMeter

    key = generate_key()
    pieces = [buffers[i % len(buffers)] for i in range(size // MIB)]
    sealed = asyncio.run(drain(encrypt_stream(key, CONTEXT, agen(pieces)), keep=True))

    def hashing() -> None:
        # The vault's own meter (SHA-256 by hashlib, CRC-32 by ISA-L since issue 19's
        # fourth round), as every upload runs it.
        meter = UploadMeter(size)
        for piece in pieces:
            meter.digest(piece)

    def least(run: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            started = time.process_time()
            run()
            times.append(time.process_time() - started)
        return min(times) / (size / GIB)

    return {
        "encrypt": least(lambda: asyncio.run(drain(encrypt_stream(key, CONTEXT, agen(pieces))))),
        "decrypt": least(lambda: asyncio.run(drain(decrypt_stream(key, CONTEXT, agen(sealed))))),
        "hash": least(hashing),
    }


def filesystem_section(
    work: Path, args: argparse.Namespace, buffers: list[bytes],
    started: list[subprocess.Popen[bytes]],
) -> tuple[Vault, Bare]:  # fmt: skip
    """`started`: each server process is added as it starts, for the caller to stop."""
    size = args.size_mib * MIB
    vault = Vault(work, "vault", size, {})
    started.append(vault.process)
    bare = Bare(work)
    started.append(bare.process)
    results = {"vault": Measured(), "bare": Measured()}
    with httpx.Client(timeout=300) as http:
        vault.prepare(http)
        # Warm both up (imports, pools, key caches) with a small object.
        vault.round_trip(http, buffers, 4 * MIB, Measured())
        bare.round_trip(http, buffers, 4 * MIB, Measured())
        rss_before = peak_rss_mib(vault.process.pid)
        for attempt in range(args.repeat):
            spy = args.py_spy if attempt == 0 else None
            vault.round_trip(http, buffers, size, results["vault"], spy)
            bare.round_trip(http, buffers, size, results["bare"])
        rss_after = peak_rss_mib(vault.process.pid)
    cost = cipher_and_hash_cost(buffers, min(size, 256 * MIB))
    print_transfers(
        f"filesystem: {args.size_mib} MiB object over loopback, best of {args.repeat}",
        results, "bare", show_cpu=True,
    )  # fmt: skip
    v, b = results["vault"], results["bare"]
    print(
        f"cipher (crypto/stream.py, this process): encrypt {cost['encrypt']:.2f}, decrypt "
        f"{cost['decrypt']:.2f} CPU s/GiB; SHA-256 + CRC-32 of the plaintext "
        f"{cost['hash']:.2f} CPU s/GiB (upload only; not in the budget below)"
    )
    for direction, cipher in (("upload", cost["encrypt"]), ("download", cost["decrypt"])):
        ratio = v.mb_s[direction] / b.mb_s[direction]
        budget = (b.cpu_s_per_gib[direction] + cipher) * GOAL_CPU_MARGIN
        cpu = v.cpu_s_per_gib[direction]
        print(
            f"goal 1, {direction}: throughput {ratio:.2f} of bare (>= {GOAL_THROUGHPUT}: "
            f"{verdict(ratio >= GOAL_THROUGHPUT)}); CPU {cpu:.2f} s/GiB against (bare "
            f"{b.cpu_s_per_gib[direction]:.2f} + cipher {cipher:.2f}) x {GOAL_CPU_MARGIN} = "
            f"{budget:.2f} ({verdict(cpu <= budget)})"
        )
    print(f"vault peak RSS: {rss_before:.0f} MiB before the transfers, {rss_after:.0f} after")
    return vault, bare


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def print_transfers(
    title: str, rows: dict[str, Measured], reference: str, *, show_cpu: bool = False
) -> None:
    print(title)
    cpu_columns = f"{'up CPU s/GiB':>14}{'down CPU s/GiB':>16}" if show_cpu else ""
    print(f"{'':12}{'upload MB/s':>14}{'download MB/s':>16}{cpu_columns}")
    for name, row in rows.items():
        cpu = ""
        if show_cpu:
            cpu = f"{row.cpu_s_per_gib['upload']:>14.2f}{row.cpu_s_per_gib['download']:>16.2f}"
        print(f"{name:12}{row.mb_s['upload']:>14.0f}{row.mb_s['download']:>16.0f}{cpu}")
    vault, other = rows["vault"], rows[reference]
    up, down = (vault.mb_s[d] / other.mb_s[d] for d in ("upload", "download"))
    print(f"{'vault/' + reference:12}{up:>14.2f}{down:>16.2f}")


class ConnectionClosed(Exception):
    pass


class RawClient:
    """One keep-alive HTTP/1.1 connection on a blocking socket: GETs with a Range header,
    the answer read whole (Content-Length only), and little client CPU in the way."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self._head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._port = port
        self._buffer = b""
        self._sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self._port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def get_range(self, path: str, start: int, end: int) -> float:
        """Seconds from sending the request to its last byte; the status must be 206. A
        connection the server closed while it sat idle (uvicorn's 5 s keep-alive, while
        the other server had its half on a loaded machine) is opened again, as a player
        would, and the request sent again, timed from then."""
        try:
            return self._get_range(path, start, end)
        except ConnectionClosed:
            if self._buffer:
                raise SystemExit("the server closed the connection mid-answer") from None
            self._sock.close()
            self._sock = self._connect()
            return self._get_range(path, start, end)

    def _get_range(self, path: str, start: int, end: int) -> float:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self._port}\r\n{self._head}"
            f"Range: bytes={start}-{end}\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        try:
            self._sock.sendall(request)
        except OSError:
            raise ConnectionClosed from None
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._receive()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        while len(self._buffer) < length:
            self._buffer += self._receive()
        elapsed = time.perf_counter() - started
        self._buffer = self._buffer[length:]
        if " 206 " not in lines[0] or length != end + 1 - start:
            raise SystemExit(f"range read of {path}: {lines[0]}, {length} bytes")
        return elapsed

    def _receive(self) -> bytes:
        try:
            data = self._sock.recv(4 * MIB)
        except ConnectionResetError:
            data = b""
        if not data:
            raise ConnectionClosed
        return data

    def close(self) -> None:
        self._sock.close()


def raw_download(port: int, path: str, headers: dict[str, str], size: int) -> None:
    """GET `path` on a blocking socket, the body received into one reused 1 MiB buffer
    and dropped: an HTTP client about as cheap per byte as boto3's own read (recv_into),
    where httpx's iter_raw costs the client 0.7-1.0 CPU s/GiB (issue 19, fifth round)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request.encode("latin-1"))
        received = b""
        while b"\r\n\r\n" not in received:
            more = sock.recv(64 * 1024)
            if not more:
                raise SystemExit(f"download of {path}: the connection closed in the head")
            received += more
        status, _, rest = received.partition(b"\r\n\r\n")
        if b" 200 " not in status.split(b"\r\n", 1)[0]:
            raise SystemExit(f"download of {path}: {status[:100]!r}")
        got, buffer = len(rest), memoryview(bytearray(MIB))
        while got < size:
            n = sock.recv_into(buffer)
            if not n:
                break
            got += n
    if got != size:
        raise SystemExit(f"download of {path}: {got} bytes, expected {size}")


def urllib3_download(
    pool: urllib3.PoolManager, url: str, headers: dict[str, str], size: int
) -> None:
    """GET `url` through urllib3, streamed and read in 1 MiB pieces without decoding, as
    boto3's `get_object(...)["Body"].read(MIB)` reads SeaweedFS (botocore's HTTP client
    is urllib3): the vault's download measured with the same HTTP stack as the baseline's."""
    response = pool.request(
        "GET", url, headers=headers, preload_content=False, decode_content=False
    )
    try:
        if response.status != 200:
            raise SystemExit(f"download from {url} failed: {response.status}")
        received = 0
        while piece := response.read(MIB, decode_content=False):
            received += len(piece)
    finally:
        response.release_conn()
    if received != size:
        raise SystemExit(f"download from {url}: {received} bytes, expected {size}")


def range_section(vault: Vault, bare: Bare, args: argparse.Namespace, buffers: list[bytes]) -> None:
    size = args.range_object_mib * MIB
    with httpx.Client(timeout=300) as http:
        artefact = vault.store(http, buffers, size)
        upload(http, f"{bare.url}/objects/ranges", {}, buffers, size)
    rng = random.Random(19)
    offsets = [rng.randrange(0, size - RANGE_BYTES) for _ in range(args.range_reads)]
    paths = {"vault": artefact.removeprefix(vault.url) + "/content", "bare": "/objects/ranges"}
    clients = {"vault": RawClient(vault.port, vault.key), "bare": RawClient(bare.port, {})}
    latencies: dict[str, list[float]] = {"vault": [], "bare": []}
    try:
        for name, client in clients.items():  # warm-up, unmeasured
            for offset in offsets[:20]:
                client.get_range(paths[name], offset, offset + RANGE_BYTES - 1)
        half = len(offsets) // 2
        # CPU of the vault's process and of its PostgreSQL during the vault's halves: what
        # a read costs, which the machine's load does not change as much as latency.
        cpu = {"server": 0.0, "postgres": 0.0}
        with profiled(vault.process.pid, args.py_spy and args.py_spy / "vault-ranges.json"):
            for part in (offsets[:half], offsets[half:]):
                for name, client in clients.items():
                    server, database = (
                        cpu_seconds(vault.process.pid),
                        postgres_cpu_seconds(vault.pgdata),
                    )
                    for offset in part:
                        latencies[name].append(
                            client.get_range(paths[name], offset, offset + RANGE_BYTES - 1)
                        )
                    if name == "vault":
                        cpu["server"] += cpu_seconds(vault.process.pid) - server
                        cpu["postgres"] += postgres_cpu_seconds(vault.pgdata) - database
    finally:
        for client in clients.values():
            client.close()
    print()
    print(
        f"range reads: {len(offsets)} x 64 KiB at random offsets of a {args.range_object_mib} "
        "MiB object, one client, keep-alive, alternating halves"
    )
    print(f"{'':8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    figures = {}
    for name, values in latencies.items():
        cuts = statistics.quantiles(values, n=100)
        figures[name] = (cuts[49] * 1e3, cuts[89] * 1e3, cuts[98] * 1e3, max(values) * 1e3)
        print(f"{name:8}" + "".join(f"{f:>9.2f}" for f in figures[name]))
    print(
        f"vault CPU per read: {cpu['server'] / len(offsets) * 1e3:.2f} ms server process, "
        f"{cpu['postgres'] / len(offsets) * 1e3:.2f} ms PostgreSQL"
        + ("" if vault.pgdata else " (not counted: DATABASE_URL)")
    )
    p50, p99 = figures["vault"][0], figures["vault"][2]
    print(
        f"goal 2: vault p50 {p50:.2f} ms (<= {GOAL_RANGE_P50_MS}: "
        f"{verdict(p50 <= GOAL_RANGE_P50_MS)}), p99 {p99:.2f} ms (<= {GOAL_RANGE_P99_MS}: "
        f"{verdict(p99 <= GOAL_RANGE_P99_MS)})"
    )


class BodyReader(io.RawIOBase):
    """The same bytes `body` sends, as a file object for boto3's upload_fileobj."""

    def __init__(self, buffers: list[bytes], size: int) -> None:
        self._pieces = body(buffers, size)
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._rest:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._rest = memoryview(piece)
        n = min(len(target), len(self._rest))
        target[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def s3_section(work: Path, args: argparse.Namespace, buffers: list[bytes]) -> None:
    """The vault with the S3 blob store on a local SeaweedFS, next to boto3 talking to
    the same SeaweedFS directly with the same bytes."""
    sys.path.insert(0, str(ROOT))
    from tests.seaweed import REGION, running_seaweed

    size = args.s3_size_mib * MIB
    (work / "seaweed").mkdir()
    results = {"vault": Measured(), "boto3": Measured()}
    raw = Measured()  # the vault's download read by raw_download (informative)
    # The vault's download read by urllib3 as boto3 reads SeaweedFS: goal 3's figure.
    same_stack = Measured()
    client_cpu: list[float] = []  # httpx's CPU per GiB reading the vault's downloads
    rss: list[float] = []
    spy = args.py_spy and args.py_spy / "s3"  # the S3 vault's transfers, when profiling
    if spy:
        spy.mkdir(exist_ok=True)
    # running_seaweed sets the AWS_* credentials in os.environ while it runs; the vault
    # started inside inherits them.
    with running_seaweed(work / "seaweed") as seaweed:
        # As production has it: a bucket with Object Lock (the shred ledger is locked).
        bucket = "stream-bench"
        client = seaweed.client()
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        vault = Vault(
            work,
            "vault-s3",
            size,
            {
                "DATAVAULT_S3_BUCKET": bucket,
                "DATAVAULT_S3_ENDPOINT_URL": seaweed.endpoint_url,
                "DATAVAULT_S3_REGION": REGION,
            },
        )
        me = os.getpid()  # boto3 runs in this process; its CPU is not the vault's
        try:
            with httpx.Client(timeout=300) as http, urllib3.PoolManager(maxsize=1) as pool:
                vault.prepare(http)
                vault.round_trip(http, buffers, 4 * MIB, Measured())  # warm up
                rss.append(peak_rss_mib(vault.process.pid))
                for attempt in range(args.repeat):
                    vault.round_trip(http, buffers, size, results["vault"], spy)
                    client_cpu.append(vault.client_cpu_s_per_gib)
                    key = f"bench/direct-{attempt}"
                    reader = io.BufferedReader(BodyReader(buffers, size), MIB)
                    results["boto3"].timed(
                        "upload", me, size,
                        lambda: client.upload_fileobj(reader, bucket, key),  # noqa: B023
                    )  # fmt: skip

                    def get() -> None:
                        received = 0
                        streamed = client.get_object(Bucket=bucket, Key=key)["Body"]  # noqa: B023
                        while piece := streamed.read(MIB):
                            received += len(piece)
                        if received != size:
                            raise SystemExit(f"boto3 read {received} bytes, expected {size}")

                    results["boto3"].timed("download", me, size, get)
                    client.delete_object(Bucket=bucket, Key=key)
                    # The same download again, read by boto3's own HTTP stack (urllib3)
                    # and by a raw socket, from an artefact of the same size.
                    stored = vault.store(http, buffers, size)
                    path = stored.removeprefix(vault.url) + "/content"
                    same_stack.timed(
                        "download", me, size,
                        lambda: urllib3_download(pool, f"{stored}/content", vault.key, size),  # noqa: B023
                    )  # fmt: skip
                    raw.timed(
                        "download", me, size,
                        lambda: raw_download(vault.port, path, vault.key, size),  # noqa: B023
                    )  # fmt: skip
                    http.delete(stored, headers=vault.key)
                rss.append(peak_rss_mib(vault.process.pid))
        finally:
            client.close()
            stop(vault.process)
    print()
    print_transfers(
        f"S3 (SeaweedFS on loopback): {args.s3_size_mib} MiB object (--s3-size-mib; smaller "
        f"than the filesystem one to keep the run short), best of {args.repeat}; boto3 = "
        "upload_fileobj (default TransferConfig: 8 MiB parts, up to 10 threads) and "
        "get_object streamed in 1 MiB reads",
        results,
        "boto3",
        show_cpu=True,
    )
    boto3_mb_s = results["boto3"].mb_s["download"]
    down = same_stack.mb_s["download"] / boto3_mb_s
    print(
        f"goal 3: vault download read by urllib3 (boto3's HTTP stack, streamed, 1 MiB reads; "
        f"client {same_stack.cpu_s_per_gib['download']:.2f} CPU s/GiB) "
        f"{same_stack.mb_s['download']:.0f} MB/s = {down:.2f} of boto3's "
        f"(>= {GOAL_S3_DOWNLOAD}: {verdict(down >= GOAL_S3_DOWNLOAD)})"
    )
    httpx_ratio = results["vault"].mb_s["download"] / boto3_mb_s
    print(
        f"the same read by httpx (the table's vault row; before issue 19's sixth round the "
        f"goal's figure): {httpx_ratio:.2f} of boto3's; the measuring client's CPU per GiB: "
        f"httpx reading the vault {min(client_cpu):.2f}, boto3's whole read "
        f"{results['boto3'].cpu_s_per_gib['download']:.2f}"
    )
    raw_ratio = raw.mb_s["download"] / results["boto3"].mb_s["download"]
    print(
        f"informative, not goal 3: the vault's download read by a raw-socket client "
        f"(recv_into, {raw.cpu_s_per_gib['download']:.2f} client CPU s/GiB) "
        f"{raw.mb_s['download']:.0f} MB/s = {raw_ratio:.2f} of boto3's"
    )
    print(f"vault (S3) peak RSS: {rss[0]:.0f} MiB before the transfers, {rss[1]:.0f} MiB after")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--range-reads", type=int, default=400, help="0: no range section")
    parser.add_argument("--range-object-mib", type=int, default=64)
    parser.add_argument("--s3-size-mib", type=int, default=256)
    parser.add_argument("--skip-s3", action="store_true", help="no S3 section")
    parser.add_argument("--py-spy", type=Path, help="directory for py-spy profiles of the vault")
    args = parser.parse_args()
    if args.py_spy is not None:
        if shutil.which("py-spy") is None:
            raise SystemExit("--py-spy needs py-spy on PATH (pip install py-spy)")
        args.py_spy.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {load_average()}")

    work = Path(tempfile.mkdtemp(prefix="datavault-stream-bench-"))
    buffers = [os.urandom(MIB) for _ in range(4)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        vault, bare = filesystem_section(work, args, buffers, processes)
        if args.range_reads:
            range_section(vault, bare, args, buffers)
        for process in processes:
            stop(process)
        if not args.skip_s3:
            s3_section(work, args, buffers)
        print(f"load average at end: {load_average()}")
        return 0
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
