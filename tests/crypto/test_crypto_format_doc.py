"""FORMAT.md carries the test vectors the tests check, byte for byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

import crypto
from crypto.limits import DEFAULT_SEGMENT_SIZE, MAX_SEGMENTS

FORMAT = (Path(crypto.__file__).parent / "FORMAT.md").read_text()
VECTORS = Path(__file__).parent / "vectors"


def hex_blocks() -> set[str]:
    return {re.sub(r"\s", "", block) for block in re.findall(r"```hex\n(.*?)```", FORMAT, re.S)}


def vector(name: str, index: int) -> dict[str, str]:
    return dict(json.loads((VECTORS / f"{name}.json").read_text())[index])


def test_format_doc_vectors_are_the_checked_vectors() -> None:
    assert hex_blocks() == {
        vector("context", 0)["encoding"],
        vector("context", 3)["encoding"],
        vector("keywrap", 0)["wrapped"],
        vector("record", 1)["sealed"],
        vector("record", 3)["sealed"],
        vector("stream", 1)["ciphertext"],
        vector("stream", 5)["ciphertext"],
        vector("stream", 9)["ciphertext"],
        vector("local", 0)["envelope"],
    }


def test_format_doc_names_every_version_it_writes_or_reads() -> None:
    for marker in ("`DVKC 01`", "`DVKC 02`", "`B1`", "`B2`", "`C1`", "`C2`", "`C3`"):
        assert marker in FORMAT
    for label in (
        "datavault/record/v2/key",
        "datavault/stream/v2/segment-key",
        "datavault/stream/v3/segment-key",
        "datavault/stream/v3/commitment",
    ):
        assert label in FORMAT


def test_format_doc_states_the_stream_limits() -> None:
    assert DEFAULT_SEGMENT_SIZE == 2**20 and "1 MiB" in FORMAT
    assert MAX_SEGMENTS == 2**32 and "2**32" in FORMAT and "4 PiB" in FORMAT
