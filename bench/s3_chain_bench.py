"""Issue 19, goal 3: the S3 download's chain and the bound it sets, measured.

    python bench/s3_chain_bench.py [--size-mib 256] [--rounds 5] [--checkout PATH ...]

boto3's streamed `get_object` is a chain of two processes (SeaweedFS serving, boto3
reading); the vault's download is three (SeaweedFS, the vault receiving + opening +
sending, the client receiving). On two saturated cores the rate is about 2 cores / (the
CPU seconds per GiB of every stage), so

    vault / boto3  <=  (S + B) / (S' + V + C)

S, S': SeaweedFS's CPU per GiB served (one `weed server`: master, volume, filer and S3
gateway, all threads), B: boto3's whole read, V: the vault's process, C: the client
reading the vault (urllib3, streamed 1 MiB reads, as stream_bench.py's goal-3 figure).
Each transfer also prints the cores its chain used (CPU of all stages / wall) and each
round the cores the run could have had (`cores_available`: busy loops, one per core,
just before the round; with other sessions busy that is a share of the two cores, not
two). A chain that used about what was available is CPU-bound and the bound applies; one
well under it waits on latency (read-ahead depth, wake-ups), and then the bound is not
what limits it.

Beside the vault, the same chain with bench/bare_s3_relay.py as the server: the cheapest
decrypting download (a blocking thread: boto3 read, AES-GCM open, sendall) and the same
without the opening: the floor any vault that decrypts stands on. Every transfer is one
read of one object of --size-mib; the subjects take turns in each round (the order
rotates), and the figures are per round and the median over rounds. --checkout PATH adds
a vault run from another checkout (e.g. a worktree of main) as one more subject.

The objects: boto3's is the plaintext, multipart in 8 MiB parts; the relay's the same
bytes sealed as 1 MiB + 16 segments, multipart too; the vault's an artefact uploaded
through its API (its own 1 MiB segments). Nothing else should run: the figures move with
the machine's load, printed beside each round.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import urllib3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from processes import cpu_seconds, free_port, stop
from stream_bench import GIB, MIB, ROOT, Vault, body, load_average, urllib3_download

GOAL_S3_DOWNLOAD = 0.9
IDLE_SAMPLE_SECONDS = 10.0
SHARE_SAMPLE_SECONDS = 2.0
CORES = os.cpu_count() or 2


class Pieces(io.RawIOBase):
    """An iterator of byte strings as a file object, for boto3's upload_fileobj."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
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


def sealed(key: bytes, pieces: Iterator[bytes]) -> Iterator[bytes]:
    """bare_s3_relay.py's format: segment i sealed under nonce i."""
    cipher = AESGCM(key)
    for number, piece in enumerate(pieces):
        yield cipher.encrypt(number.to_bytes(12, "big"), piece, None)


def weed_pid() -> int:
    """The `weed server` this process started (tests/seaweed.py)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name == "weed" and stat.rsplit(")", 1)[1].split()[1] == me:
            return int(entry.name)
    raise SystemExit("no weed process among this process's children")


class Transfer:
    """One read: wall seconds and CPU seconds per GiB of each stage."""

    def __init__(self, wall: float, size: int, cpu: dict[str, float]) -> None:
        self.wall = wall
        self.gib = size / GIB
        self.mb_s = size / wall / 1e6
        self.per_gib = {stage: seconds / (size / GIB) for stage, seconds in cpu.items()}
        # Cores the chain used: every stage's CPU over the wall time.
        self.cores = sum(cpu.values()) / wall


def cores_available(seconds: float = SHARE_SAMPLE_SECONDS) -> float:
    """The CPU this run can have now: cores used by one busy-looping process per core
    started from here. On this machine the kernel shares the CPU between sessions
    (autogroups) before it looks at nice values, so with other sessions busy a run gets
    a share of the two cores, whatever it asks for; a chain that uses about that much is
    CPU-bound, and its rate is that share over its CPU seconds per GiB. Rough: a chain
    that sleeps and wakes gets more than busy loops do (the scheduler favours a waking
    task), so it tells whether a core was free more than how much."""
    loop = (
        "import time\n"
        f"end = time.perf_counter() + {seconds}\n"
        "while time.perf_counter() < end: pass\n"
        "print(time.process_time())"
    )
    spinners = [
        subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE) for _ in range(CORES)
    ]
    used = sum(float(spinner.communicate()[0]) for spinner in spinners)
    return used / seconds


def measured(stages: dict[str, int], run: Callable[[], None], size: int) -> Transfer:
    """`run()` timed, with the CPU each stage's process used during it."""
    before = {stage: cpu_seconds(pid) for stage, pid in stages.items()}
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    used = {stage: cpu_seconds(pid) - before[stage] for stage, pid in stages.items()}
    return Transfer(wall, size, used)


def boto3_read(client: Any, bucket: str, key: str, size: int) -> None:
    received = 0
    streamed = client.get_object(Bucket=bucket, Key=key)["Body"]
    while piece := streamed.read(MIB):
        received += len(piece)
    if received != size:
        raise SystemExit(f"boto3 read {received} bytes, expected {size}")


def start_relay(work: Path, endpoint: str, bucket: str, region: str, key: bytes) -> tuple[
    subprocess.Popen[bytes], int
]:  # fmt: skip
    port = free_port()
    log = work / "relay.log"
    with log.open("wb") as sink:
        relay = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "bare_s3_relay.py"), str(port), endpoint,
             bucket, region],
            env={**os.environ, "BENCH_RELAY_KEY": key.hex()}, stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while b"ready" not in log.read_bytes():
        if relay.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the relay did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    return relay, port


def print_round(number: int, load: str, share: float, results: dict[str, Transfer]) -> None:
    print(f"round {number} (load {load}; this run could have {share:.2f} cores)")
    print(
        f"  {'subject':20}{'MB/s':>7}{'S':>7}{'client':>8}{'server':>8}"
        f"{'sum':>7}{'cores':>7}{'ratio':>7}{'bound':>7}"
    )
    boto = results["boto3"]
    for name, t in results.items():
        print(
            f"  {name:20}{t.mb_s:>7.0f}{t.per_gib['seaweed']:>7.2f}{t.per_gib['client']:>8.2f}"
            f"{t.per_gib.get('server', 0.0):>8.2f}{_total(t):>7.2f}{t.cores:>7.2f}"
            f"{t.mb_s / boto.mb_s:>7.2f}{_bound(t, boto):>7.2f}"
        )


def idle_rates(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds per second each process uses with no transfer running, printed. Work a
    process does on its own (SeaweedFS's heartbeats and meta streams; the vault's
    background jobs, which `vault serve` runs in its process: the ledger publisher
    polling the bucket, the sweeper, the hold and closure jobs) is charged to whichever
    transfer it falls in, the more the slower the transfer."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    time.sleep(IDLE_SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    rates = {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}
    print("idle, CPU s per second: " + ", ".join(f"{n} {r:.3f}" for n, r in rates.items()))
    return rates


def summary(rounds: list[dict[str, Transfer]], shares: list[float], idle: dict[str, float]) -> None:
    def median(name: str, figure: Callable[[Transfer, Transfer], float]) -> float:
        return statistics.median(figure(r[name], r["boto3"]) for r in rounds)

    print()
    print(
        f"medians over {len(rounds)} rounds (CPU s/GiB; ratio and bound against boto3); the "
        f"run could have {statistics.median(shares):.2f} cores ({min(shares):.2f}-"
        f"{max(shares):.2f})"
    )
    print(
        f"  {'subject':20}{'MB/s':>7}{'S':>7}{'client':>8}{'server':>8}"
        f"{'sum':>7}{'cores':>7}{'ratio':>7}{'bound':>7}"
    )
    for name in rounds[0]:
        print(
            f"  {name:20}{median(name, lambda t, _: t.mb_s):>7.0f}"
            f"{median(name, lambda t, _: t.per_gib['seaweed']):>7.2f}"
            f"{median(name, lambda t, _: t.per_gib['client']):>8.2f}"
            f"{median(name, lambda t, _: t.per_gib.get('server', 0.0)):>8.2f}"
            f"{median(name, lambda t, _: _total(t)):>7.2f}"
            f"{median(name, lambda t, _: t.cores):>7.2f}"
            f"{median(name, lambda t, b: t.mb_s / b.mb_s):>7.2f}"
            f"{median(name, _bound):>7.2f}"
        )
    s = statistics.median(r["boto3"].per_gib["seaweed"] for r in rounds)
    b = statistics.median(r["boto3"].per_gib["client"] for r in rounds)
    c_vault = statistics.median(r["vault"].per_gib["client"] for r in rounds)
    # S' = S: the same bytes served the same way cost SeaweedFS the same (the medians
    # differ by its noise: its Go collector's work lands in whichever transfer it falls).
    print(
        f"with S' = S: {GOAL_S3_DOWNLOAD} needs V <= (S + B) / {GOAL_S3_DOWNLOAD} - S - C = "
        f"{(s + b) / GOAL_S3_DOWNLOAD - s - c_vault:.2f} CPU s/GiB; a server that only "
        f"received the bytes as boto3 does (V = B, no opening, no sending) would be bound "
        f"at {(s + b) / (s + b + c_vault):.2f}"
    )
    for name in rounds[0]:
        if name == "boto3":
            continue
        s_v = statistics.median(r[name].per_gib["seaweed"] for r in rounds)
        c = statistics.median(r[name].per_gib["client"] for r in rounds)
        v = statistics.median(r[name].per_gib["server"] for r in rounds)
        # ratio <= (S + B) / (S' + V + C) >= GOAL  <=>  V <= (S + B) / GOAL - S' - C
        needed = (s + b) / GOAL_S3_DOWNLOAD - s_v - c
        print(
            f"{name}: S {s:.2f} (under boto3) / {s_v:.2f} (under it), B {b:.2f}, V {v:.2f}, "
            f"C {c:.2f}: bound (S + B) / (S' + V + C) = {(s + b) / (s_v + v + c):.2f}; "
            f"{GOAL_S3_DOWNLOAD} needs V <= {needed:.2f} CPU s/GiB"
            + (f" ({_FLOOR_NOTES[name]})" if name in _FLOOR_NOTES else "")
        )
        if name in idle:
            # What its idle work took of V at this rate: idle CPU/s x seconds per GiB.
            idle_share = idle[name] * statistics.median(r[name].wall / r[name].gib for r in rounds)
            print(f"  of which its work when idle, at this rate: {idle_share:.2f} CPU s/GiB")


_FLOOR_NOTES = {
    "relay-open": "bare_s3_relay.py: boto3's read + AES-GCM open on one thread, sendall on "
    "another; the floor for a vault that decrypts",
    "relay-plain": "bare_s3_relay.py without the opening: boto3's read + sendall",
}


def _total(t: Transfer) -> float:
    return t.per_gib["seaweed"] + t.per_gib["client"] + t.per_gib.get("server", 0.0)


def _bound(t: Transfer, boto: Transfer) -> float:
    return (boto.per_gib["seaweed"] + boto.per_gib["client"]) / _total(t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--checkout", type=Path, action="append", default=[],
        help="another checkout whose vault is measured too (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.seaweed import REGION, running_seaweed

    size = args.size_mib * MIB
    buffers = [os.urandom(MIB) for _ in range(4)]
    relay_key = AESGCM.generate_key(bit_length=256)
    work = Path(tempfile.mkdtemp(prefix="datavault-s3-chain-"))
    (work / "seaweed").mkdir()
    started: list[subprocess.Popen[bytes]] = []
    print(f"load average at start: {load_average()}")
    try:
        with running_seaweed(work / "seaweed") as seaweed:
            bucket = "s3-chain-bench"
            client = seaweed.client()
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            checkouts = {"vault": ROOT} | {
                f"vault@{path.name}": path.resolve() for path in args.checkout
            }
            vaults = {}
            for number, (name, root) in enumerate(checkouts.items()):
                # A bucket each: a vault's shred ledger lives in its bucket.
                own = f"{bucket}-vault-{number}"
                client.create_bucket(Bucket=own, ObjectLockEnabledForBucket=True)
                vault = Vault(
                    work, name.replace("@", "-"), size,
                    {"DATAVAULT_S3_BUCKET": own,
                     "DATAVAULT_S3_ENDPOINT_URL": seaweed.endpoint_url,
                     "DATAVAULT_S3_REGION": REGION},
                    root=root,
                )  # fmt: skip
                started.append(vault.process)
                vaults[name] = vault
            relay, relay_port = start_relay(work, seaweed.endpoint_url, bucket, REGION, relay_key)
            started.append(relay)
            client.upload_fileobj(io.BufferedReader(Pieces(body(buffers, size)), MIB), bucket,
                                  "plain")  # fmt: skip
            client.upload_fileobj(
                io.BufferedReader(Pieces(sealed(relay_key, body(buffers, size))), MIB),
                bucket, "sealed",
            )  # fmt: skip
            weed, me = weed_pid(), os.getpid()
            urls: dict[str, str] = {}
            with httpx.Client(timeout=300) as http:
                for name, vault in vaults.items():
                    vault.prepare(http)
                    urls[name] = vault.store(http, buffers, size) + "/content"
            relay_url = f"http://127.0.0.1:{relay_port}"
            runs: dict[str, tuple[dict[str, int], Callable[[], None]]] = {
                "boto3": (
                    {"seaweed": weed, "client": me},
                    lambda: boto3_read(client, bucket, "plain", size),
                ),
            }
            with urllib3.PoolManager(maxsize=1) as pool:
                for name, vault in vaults.items():
                    runs[name] = (
                        {"seaweed": weed, "client": me, "server": vault.process.pid},
                        lambda url=urls[name], key=vault.key: urllib3_download(  # type: ignore[misc]
                            pool, url, key, size
                        ),
                    )
                relay_stages = {"seaweed": weed, "client": me, "server": relay.pid}
                runs["relay-open"] = (
                    relay_stages,
                    lambda: urllib3_download(pool, f"{relay_url}/sealed", {}, size),
                )
                runs["relay-plain"] = (
                    relay_stages,
                    lambda: urllib3_download(pool, f"{relay_url}/plain?plain", {}, size),
                )
                for stages, run in runs.values():  # warm-up, unmeasured
                    measured(stages, run, size)
                idle = idle_rates({"seaweed": weed} | {n: v.process.pid for n, v in vaults.items()})
                rounds: list[dict[str, Transfer]] = []
                shares: list[float] = []
                names = list(runs)
                for number in range(1, args.rounds + 1):
                    load = f"{os.getloadavg()[0]:.2f}"
                    shares.append(cores_available())
                    shift = (number - 1) % len(names)
                    order = names[shift:] + names[:shift]
                    results = {name: measured(*runs[name], size) for name in order}
                    rounds.append({name: results[name] for name in names})
                    print_round(number, load, shares[-1], rounds[-1])
            summary(rounds, shares, idle)
            client.close()
            for process in started:
                stop(process)
        print(f"load average at end: {load_average()}")
        return 0
    finally:
        for process in started:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
