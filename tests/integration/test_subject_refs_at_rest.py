"""Subject references are never at rest in the clear (DESIGN.md "Key hierarchy", "Access
log"; API.md "Conventions": use an opaque user id, the vault keeps its keyed hash and an
encrypted copy). After every kind of write and read that names a subject, neither the
database (a pg_dump, and every column of every table read as the owner) nor the data
directory holds the reference in any encoding: raw, UTF-8, hex, base64 or percent-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import asyncpg

from tests.api.helpers import (
    artefact_url,
    auth,
    create_key,
    put_record,
    record_url,
    subject_url,
    upload,
)
from tests.jobs import run_anchor_pass, run_worker_pass
from tests.support import make_tenant, running_server
from vault.config import Settings
from vault.db.embedded import postgres_bin_dir


def _base64_forms(data: bytes) -> set[bytes]:
    """Base64 of `data` wherever it starts in a longer value: for each of the 3 byte
    alignments, the characters that depend on `data`'s bytes alone (standard and URL-safe
    alphabets)."""
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data)
        whole_groups = (shift + len(data)) // 3
        core = encoded[(4 if shift else 0) : whole_groups * 4]
        forms |= {core, core.replace(b"+", b"-").replace(b"/", b"_")}
    return forms


def _forms(secret: str) -> dict[str, set[bytes]]:
    """Every encoding of `secret` to look for, by name. Hex and text are matched against
    a lower-cased haystack, so upper-case spellings are found too."""
    raw = secret.encode()
    return {
        "utf-8 (any case)": {raw.lower()},
        "percent-encoded (any case)": {urllib.parse.quote(secret, safe="").encode().lower()},
        "hex (any case)": {raw.hex().encode()},
        "base64": _base64_forms(raw),
    }


def _find(haystack: bytes, needles: dict[str, dict[str, set[bytes]]]) -> list[str]:
    lowered = haystack.lower()
    found = []
    for secret, forms in needles.items():
        for name, variants in forms.items():
            space = haystack if name == "base64" else lowered
            if any(variant in space for variant in variants):
                found.append(f"{secret!r} as {name}")
    return found


def _every_value(url: str) -> list[tuple[str, bytes]]:
    """Every value of every column of every table in the public schema, read as the
    database owner (no row-level security), as (table, bytes)."""

    async def run() -> list[tuple[str, bytes]]:
        conn = await asyncpg.connect(url)
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
            values: list[tuple[str, bytes]] = []
            for table in tables:
                name = table["tablename"]
                for row in await conn.fetch(f'SELECT * FROM public."{name}"'):
                    for value in row.values():
                        if value is None:
                            continue
                        if isinstance(value, bytes | bytearray | memoryview):
                            values.append((name, bytes(value)))
                        else:
                            values.append((name, str(value).encode()))
            return values
        finally:
            await conn.close()

    return asyncio.run(run())


def _files(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_subject_references_appear_nowhere_at_rest(private_vault: Settings, tmp_path: Path) -> None:
    url = private_vault.database_url or ""
    tenant = make_tenant(private_vault, url)
    core = f"Zq{uuid.uuid4().hex}"
    ref = f"org/{core}-kept"  # a `/` too: its percent-encoded path form differs
    erased_core = f"Xw{uuid.uuid4().hex}"
    erased = f"{erased_core}-erased"
    with running_server(private_vault, url) as server, server.client() as http:
        app = create_key(http, tenant, ["ingest", "read"])
        officer = create_key(http, tenant, ["compliance"])
        privacy = create_key(http, tenant, ["erasure"])
        # Records: created, replaced (the old version shredded), a second one; the values
        # name the subject too (values are encrypted like everything else).
        for text in (f'{{"user": "{ref}", "v": 1}}', f'{{"user": "{ref}", "v": 2}}'):
            assert put_record(http, app, ref, "profile", text.encode()).status_code in (200, 201)
        billing = put_record(http, app, ref, "billing", b'{"plan": "pro"}', "billing")
        assert billing.status_code == 201, billing.text
        # An artefact whose bytes and file name name the subject, sent with an
        # Idempotency-Key (whose stored answer carries subject_ref), and sent again.
        content = (ref.encode() + b"\n") * 5000
        headers = {"Idempotency-Key": f"upload-{uuid.uuid4().hex}"}
        first = upload(
            http, app, ref, content, content_type="audio/wav",
            filename=f"{core}.wav", headers=headers,
        )  # fmt: skip
        again = upload(
            http, app, ref, content, content_type="audio/wav",
            filename=f"{core}.wav", headers=headers,
        )  # fmt: skip
        assert first.status_code == 201, first.text
        assert again.json() == first.json()
        artefact = first.json()
        # A hold and a restriction on the subject, lifted again.
        hold = http.post(
            "/v1/holds",
            json={"subject_ref": ref, "categories": ["billing"], "reason": "billing",
                  "reference": "CASE-77"},
            headers=auth(officer),
        )  # fmt: skip
        assert hold.status_code == 201, hold.text
        restricted = http.post(
            subject_url(ref, "restriction"), json={"reason": "objection"}, headers=auth(officer)
        )
        assert restricted.status_code in (200, 201, 204), restricted.text
        lifted = http.delete(subject_url(ref, "restriction"), headers=auth(officer))
        assert lifted.status_code in (200, 204), lifted.text
        # Reads that name the subject in the path or the query (all access-logged).
        reads = [
            http.get(subject_url(ref), headers=auth(app)),
            http.get(subject_url(ref, "export"), headers=auth(app)),
            http.get(subject_url(ref, "artefacts"), headers=auth(app)),
            http.get(artefact_url(ref, artefact["id"], "content"), headers=auth(app)),
            http.get(record_url(ref, "profile"), headers=auth(app)),
            http.get("/v1/holds", params={"subject_ref": ref}, headers=auth(officer)),
            http.get("/v1/access-log", params={"subject_ref": ref}, headers=auth(officer)),
        ]
        assert [r.status_code for r in reads] == [200] * len(reads), [r.text for r in reads]
        summary = reads[0].json()
        # Another subject, erased: its erasure, items and receipt stay behind.
        assert put_record(http, app, erased, "profile", b'{"n": 1}').status_code == 201
        erasure = http.post(f"/v1/subjects/{erased}/erasure", headers=auth(privacy))
        assert erasure.status_code == 202, erasure.text
        run_worker_pass(server)
        shown = http.get(f"/v1/erasures/{erasure.json()['id']}", headers=auth(privacy))
        assert shown.json()["status"] == "completed", shown.text
        # What the jobs write is at rest too: the shred ledger (above) and the anchors.
        assert run_anchor_pass(server) >= 1
        receipt = http.get(f"/v1/erasures/{erasure.json()['id']}/receipt", headers=auth(privacy))
        assert receipt.status_code == 200, receipt.text

        dump = tmp_path / "dump.sql"
        subprocess.run(
            [str(postgres_bin_dir() / "pg_dump"), "-Fp", "-f", str(dump), "-d", url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        dumped = dump.read_bytes()
        values = _every_value(url)
        files = _files(private_vault.data_dir)

    needles = {ref: _forms(ref), core: _forms(core), erased_core: _forms(erased_core)}
    # The dump and the values are the real thing, not an empty shell.
    assert len(dumped) > 50_000, len(dumped)
    for marker in (
        str(tenant.id),
        artefact["id"],
        summary["subject_ref_hash"],  # the subjects row (keyed hash, as hex bytea)
        "CASE-77",
        hold.json()["id"],
        erasure.json()["id"],
    ):
        assert marker.lower().encode() in dumped.lower(), marker
    tables = {table for table, _ in values}
    assert {"subjects", "records", "artefacts", "holds", "erasures", "data_keys"} <= tables
    assert any(name.startswith("blobs/tenants/") for name, _ in files), "no blob in the data dir"

    leaks = [f"pg_dump: {found}" for found in _find(dumped, needles)]
    for table, value in values:
        leaks += [f"table {table}: {found}" for found in _find(value, needles)]
    for name, data in files:
        leaks += [f"file {name}: {found}" for found in _find(data, needles)]
    assert leaks == [], sorted(set(leaks))


def test_the_search_finds_a_reference_in_every_form() -> None:
    """The positive twin of the scan: each form is found where it is planted, at any
    offset, so a clean result above means something."""
    secret = f"org/Zq{uuid.uuid4().hex}"
    needles = {secret: _forms(secret)}
    raw = secret.encode()
    planted = {
        "utf-8 (any case)": [raw, raw.upper(), b"xx" + raw + b"yy"],
        "percent-encoded (any case)": [urllib.parse.quote(secret, safe="").upper().encode()],
        "hex (any case)": [raw.hex().encode(), b"\\x00" + raw.hex().upper().encode()],
        "base64": [base64.b64encode(pad + raw + b"tail") for pad in (b"", b"a", b"ab", b"abc")]
        + [base64.urlsafe_b64encode(b"ab" + raw).rstrip(b"=")],
    }
    for form, samples in planted.items():
        for sample in samples:
            assert f"{secret!r} as {form}" in _find(os.urandom(50) + sample, needles), sample
    assert _find(os.urandom(4096), needles) == []
    assert _find(b"org%2fzq", needles) == []
