"""Two vaults' 64 KiB range reads at one client, interleaved read by read.

usage: seek_ab.py TREE_A TREE_B [--reads 1500]

Each tree is a checkout with its own .venv (`make .venv/.installed-test` there), e.g. a
worktree of main and a branch. Both vaults run at once, each with its own embedded
PostgreSQL and the same 64 MiB artefact; every offset is read from one and then the other
(the order alternating), over one keep-alive connection each, with stream_bench.py's
client. So both see the same machine, minute by minute: on a shared machine whose load
swings, runs of one and then the other differed by more than the change being measured
(issue 19, sixth round). Prints p50/p90/p99 and the CPU per read of each vault's process
and of its PostgreSQL. Run it with the trees swapped too: the second vault started has
measured a few per cent less CPU than the first with the same tree.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import stream_bench as sb
from processes import cpu_seconds, postgres_cpu_seconds, stop

OBJECT_BYTES = 64 * sb.MIB
WARM_UP_READS = 50


class Side:
    """One tree's vault, its artefact and its client."""

    def __init__(self, work: Path, name: str, tree: Path, buffers: list[bytes]) -> None:
        # stream_bench.Vault starts `sys.executable -m vault` in ROOT: this tree's.
        sys.executable = str(tree / ".venv" / "bin" / "python")
        sb.ROOT = tree
        self.name = name
        self.vault = sb.Vault(work, f"vault-{name}", OBJECT_BYTES, {})
        with httpx.Client(timeout=300) as http:
            self.vault.prepare(http)
            url = self.vault.store(http, buffers, OBJECT_BYTES)
        self.path = url.removeprefix(self.vault.url) + "/content"
        self.client = sb.RawClient(self.vault.port, self.vault.key)
        self.latencies: list[float] = []

    def read(self, offset: int) -> float:
        return self.client.get_range(self.path, offset, offset + sb.RANGE_BYTES - 1)

    def cpu(self) -> tuple[float, float]:
        return (
            cpu_seconds(self.vault.process.pid),
            postgres_cpu_seconds(self.vault.pgdata),
        )

    def stop(self) -> None:
        self.client.close()
        stop(self.vault.process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree_a", type=Path)
    parser.add_argument("tree_b", type=Path)
    parser.add_argument("--reads", type=int, default=1500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="datavault-seek-ab-"))
    buffers = [os.urandom(sb.MIB) for _ in range(4)]
    python = sys.executable
    sides: list[Side] = []
    try:
        for name, tree in (("A", args.tree_a), ("B", args.tree_b)):
            sides.append(Side(work, name, tree.resolve(), buffers))
        sys.executable = python
        rng = random.Random(19)
        offsets = [rng.randrange(0, OBJECT_BYTES - sb.RANGE_BYTES) for _ in range(args.reads)]
        for offset in offsets[:WARM_UP_READS]:
            for side in sides:
                side.read(offset)
        load = os.getloadavg()[0]
        before = [side.cpu() for side in sides]
        for index, offset in enumerate(offsets):
            for side in sides if index % 2 == 0 else reversed(sides):
                side.latencies.append(side.read(offset))
        print(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        for side, (server, database) in zip(sides, before, strict=True):
            now_server, now_database = side.cpu()
            cuts = statistics.quantiles(side.latencies, n=100)
            print(
                f"{side.name}: p50 {cuts[49] * 1e3:.2f} p90 {cuts[89] * 1e3:.2f} "
                f"p99 {cuts[98] * 1e3:.2f} ms; CPU per read: vault "
                f"{(now_server - server) / args.reads * 1e3:.2f} ms, PostgreSQL "
                f"{(now_database - database) / args.reads * 1e3:.2f} ms"
            )
        return 0
    finally:
        for side in sides:
            side.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
