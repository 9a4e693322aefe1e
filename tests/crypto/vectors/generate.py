"""Regenerates the JSON test vectors (run from the repo root:
``python tests/crypto/vectors/generate.py``). The "random" bytes each vector consumed
are stored in it, so the tests replay them through the private ``_…_with`` functions.
Vectors are append-only: an existing vector must never change (old data stays readable),
so the formats no longer written (`B1`, `C1`) are still produced here, through the
private writers' format argument, and new vectors are added after the old ones
(`C3`'s after `C2`'s).
A context that names no object is written without the `object_identity` key, as every
context was before objects were bound.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crypto._stream_layout import STREAM_V1, STREAM_V2, STREAM_V3
from crypto.context import (
    OBJECT_ARTEFACT,
    OBJECT_RECORD,
    PURPOSE_ARTEFACT,
    PURPOSE_IDEMPOTENCY_REPLAY,
    PURPOSE_RECORD,
    PURPOSE_SUBJECT_KEY,
    PURPOSE_TENANT_KEK,
    KeyContext,
    ObjectIdentity,
)
from crypto.keywrap import _wrap_key_with
from crypto.records import RECORD_V1, RECORD_V2, _seal_record_with
from crypto.secrets import SecretBytes
from crypto.stream import _encrypt_stream_with

HERE = Path(__file__).parent


def pattern(start: int, n: int) -> bytes:
    return bytes((start + i) % 256 for i in range(n))


def replay(*parts: bytes) -> Callable[[int], bytes]:
    queue = list(parts)

    def rng(n: int) -> bytes:
        part = queue.pop(0)
        assert len(part) == n
        return part

    return rng


CONTEXTS = [
    KeyContext(PURPOSE_TENANT_KEK, tenant_id="t-1", key_id="kek-1", version=1),
    KeyContext(
        PURPOSE_SUBJECT_KEY,
        tenant_id="tenant-ä",
        subject_id="subj-42",
        category="recordings",
        generation=3,
        key_id="sk-9",
        version=2,
    ),
    KeyContext(PURPOSE_ARTEFACT, "t", "s", "transcripts", 1, "artefact-1", 0),
]

# DVKC 02: a record version, an artefact, and a context that names no object.
ARTEFACT_ID = "6f1c2a3e-9b4d-4c5e-8f70-0a1b2c3d4e5f"
CONTEXTS_V2 = [
    KeyContext(
        PURPOSE_RECORD,
        "t",
        "s",
        "account",
        1,
        "rec-2",
        0,
        ObjectIdentity(OBJECT_RECORD, "contact", 2),
    ),
    KeyContext(
        PURPOSE_ARTEFACT,
        "t",
        "s",
        "transcripts",
        1,
        "artefact-2",
        0,
        ObjectIdentity(OBJECT_ARTEFACT, ARTEFACT_ID),
    ),
    KeyContext(PURPOSE_IDEMPOTENCY_REPLAY, tenant_id="t-1", key_id="k-1"),
]


def context_json(context: KeyContext) -> dict[str, Any]:
    fields = asdict(context)
    if fields["object_identity"] is None:
        del fields["object_identity"]
    return fields


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _encrypt(
    key: SecretBytes, ctx: KeyContext, data: bytes, seg: int, rng: Any, version: int
) -> bytes:
    parts = [p async for p in _encrypt_stream_with(key, ctx, _chunks(data), seg, rng, version)]
    return b"".join(parts)


def main() -> None:
    ctx_vectors = [{"context": context_json(c), "encoding": c.encode_v1().hex()} for c in CONTEXTS]
    ctx_vectors += [
        {"context": context_json(c), "encoding": c.encode_v2().hex()} for c in CONTEXTS_V2
    ]
    wrap_vectors = []
    for i, ctx in enumerate(CONTEXTS[:2]):
        wrapping, key = pattern(i, 32), pattern(0x80 + i, 32)
        salt, nonce = pattern(0x40 + i, 32), pattern(0xC0 + i, 12)
        out = _wrap_key_with(SecretBytes(wrapping), SecretBytes(key), ctx, replay(salt, nonce))
        wrap_vectors.append(
            {
                "wrapping_key": wrapping.hex(),
                "key": key.hex(),
                "context": context_json(ctx),
                "salt": salt.hex(),
                "nonce": nonce.hex(),
                "wrapped": out.hex(),
            }
        )
    record_cases = [
        (RECORD_V1, b"", KeyContext(PURPOSE_RECORD, "t", "s", "account", 1, "rec-0", 1)),
        (
            RECORD_V1,
            b'{"email":"a@example.com"}',
            KeyContext(PURPOSE_RECORD, "t", "s", "account", 1, "rec-1", 1),
        ),
        (
            RECORD_V2,
            b"",
            KeyContext(
                PURPOSE_RECORD,
                "t",
                "s",
                "account",
                1,
                "rec-2",
                0,
                ObjectIdentity(OBJECT_RECORD, "contact", 1),
            ),
        ),
        (RECORD_V2, b'{"email":"a@example.com"}', CONTEXTS_V2[0]),
        (RECORD_V2, b'{"status":201}', CONTEXTS_V2[2]),
    ]
    record_vectors = []
    for i, (fmt, plaintext, ctx) in enumerate(record_cases):
        key, salt, nonce = pattern(0x10 + i, 32), pattern(0x50 + i, 32), pattern(0xD0 + i, 12)
        out = _seal_record_with(SecretBytes(key), plaintext, ctx, replay(salt, nonce), fmt)
        record_vectors.append(
            {
                "data_key": key.hex(),
                "plaintext": plaintext.hex(),
                "context": context_json(ctx),
                "salt": salt.hex(),
                "nonce": nonce.hex(),
                "sealed": out.hex(),
            }
        )
    stream_vectors = []
    stream_cases = [
        (version, ctx, size, seg)
        for version, ctx in [
            (STREAM_V1, CONTEXTS[2]),
            (STREAM_V2, CONTEXTS_V2[1]),
            (STREAM_V3, CONTEXTS_V2[1]),
        ]
        for size, seg in [(0, 16), (20, 16), (32, 16), (100, 32)]
    ]
    for i, (version, ctx, size, seg) in enumerate(stream_cases):
        key, salt, prefix = pattern(0x20 + i, 32), pattern(0x60 + i, 32), pattern(0xE0 + i, 7)
        plaintext = pattern(0x30, size)
        rng = replay(salt, prefix)
        out = asyncio.run(_encrypt(SecretBytes(key), ctx, plaintext, seg, rng, version))
        stream_vectors.append(
            {
                "data_key": key.hex(),
                "plaintext": plaintext.hex(),
                "context": context_json(ctx),
                "segment_size": seg,
                "salt": salt.hex(),
                "nonce_prefix": prefix.hex(),
                "ciphertext": out.hex(),
            }
        )
    root, key = pattern(0x70, 32), pattern(0xA0, 32)
    ctx = CONTEXTS[0]
    wrapped = _wrap_key_with(
        SecretBytes(root), SecretBytes(key), ctx, replay(pattern(0x90, 32), pattern(0xF0, 12))
    )
    key_file = {
        "format": "datavault-root-key",
        "v": 1,
        "epochs": {"2": base64.b64encode(root).decode()},
        "current": 2,
        "destroyed": [1],
    }
    local_vectors = [
        {
            "key_file": key_file,
            "context": context_json(ctx),
            "key": key.hex(),
            "envelope": (bytes([0xD1]) + (2).to_bytes(4, "big") + wrapped).hex(),
        }
    ]
    for name, vectors in [
        ("local", local_vectors),
        ("context", ctx_vectors),
        ("keywrap", wrap_vectors),
        ("record", record_vectors),
        ("stream", stream_vectors),
    ]:
        (HERE / f"{name}.json").write_text(json.dumps(vectors, indent=2) + "\n")


if __name__ == "__main__":
    main()
