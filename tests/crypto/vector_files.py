"""Reading tests/crypto/vectors/*.json: a context without `object_identity` names none
(every context written before objects were bound)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crypto.context import KeyContext, ObjectIdentity

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> list[dict[str, Any]]:
    return list(json.loads((VECTORS / f"{name}.json").read_text()))


def context_of(fields: dict[str, Any]) -> KeyContext:
    fields = dict(fields)
    obj = fields.pop("object_identity", None)
    return KeyContext(**fields, object_identity=None if obj is None else ObjectIdentity(**obj))


def spec_context_encoding(fields: dict[str, Any], version: int) -> bytes:
    """`DVKC 01` or `DVKC 02` of a vector's context fields, written from FORMAT.md without
    crypto/ (the vectors' independent check)."""

    def text(value: str) -> bytes:
        raw = value.encode("utf-8")
        return len(raw).to_bytes(4, "big") + raw

    out = b"DVKC" + bytes([version])
    out += b"".join(text(fields[name]) for name in ("purpose", "tenant_id", "subject_id"))
    out += text(fields["category"]) + fields["generation"].to_bytes(8, "big")
    out += text(fields["key_id"]) + fields["version"].to_bytes(8, "big")
    if version == 2:
        obj = fields.get("object_identity") or {"kind": "", "name": "", "version": 0}
        out += text(obj["kind"]) + text(obj["name"]) + obj["version"].to_bytes(8, "big")
    return bytes(out)
