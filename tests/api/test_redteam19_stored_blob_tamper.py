"""Red team 19: an artefact's blob changed in the filesystem store, read over HTTP.

The attacker has the store (the files under data_dir/blobs) and nothing else. Whatever
they do to the bytes, a whole download, a Range read ending before the damage, a Range
read spanning it and an export each give exactly the right plaintext or fail (a cut
stream, or the integrity problem): never other, reordered or shortened plaintext as if
complete, never a 500 without the problem body, and the failure names no key, nonce,
plaintext or subject reference in its body or the vault's log lines."""

from __future__ import annotations

import io
import json
import os
import struct
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from crypto.limits import GCM_TAG_SIZE
from tests.api.helpers import (
    MIB,
    DataKeys,
    Download,
    artefact_url,
    auth,
    blob_files,
    blob_root,
    data_keys,
    download,
    subject_url,
    uploaded,
)
from tests.support import ServerThread, make_tenant
from vault.config import Settings

SIZE = 2 * MIB + MIB // 2  # segments 0 and 1 full, segment 2 half
UNIT = MIB + GCM_TAG_SIZE


def _ref() -> str:
    return f"rt19-{uuid.uuid4().hex[:12]}"


def _only_blob(root: Path, artefact_id: str) -> Path:
    files = [p for p in blob_files(root, artefact_id) if not p.name.endswith(".partial")]
    assert len(files) == 1, (artefact_id, files)
    return files[0]


def _split(raw: bytes) -> tuple[bytes, list[bytes]]:
    header_size = 77 + raw[1]
    body = raw[header_size:]
    return raw[:header_size], [body[at : at + UNIT] for at in range(0, len(body), UNIT)]


def _with_segment_size(raw: bytes, segment_size: int) -> bytes:
    at = 2 + raw[1]
    return raw[:at] + struct.pack(">I", segment_size) + raw[at + 4 :]


def _tampered(raw: bytes, how: str) -> bytes:
    header, units = _split(raw)
    assert len(units) == 3
    return {
        "cut-at-boundary": header + units[0] + units[1],
        "cut-inside-last": raw[:-100],
        "header-only": header,
        "zero-bytes": b"",
        "middle-dropped": header + units[0] + units[2],
        "two-swapped": header + units[1] + units[0] + units[2],
        "first-duplicated": header + units[0] + units[0] + units[1] + units[2],
        "junk-appended": raw + os.urandom(UNIT),
        "segment-size-2mib": _with_segment_size(raw, 2 * MIB),
        "segment-size-16": _with_segment_size(raw, 16),
        "segment-size-64mib": _with_segment_size(raw, 64 * MIB),
        "segment-size-zero": _with_segment_size(raw, 0),
        "version-c1": b"\xc1" + raw[1:],
        "version-c2": b"\xc2" + raw[1:],  # C3's commitment would not cover the size
        "key-id-length": raw[:1] + bytes([raw[1] + 1]) + raw[2:],
    }[how]


HOW = [
    "cut-at-boundary",
    "cut-inside-last",
    "header-only",
    "zero-bytes",
    "middle-dropped",
    "two-swapped",
    "first-duplicated",
    "junk-appended",
    "segment-size-2mib",
    "segment-size-16",
    "segment-size-64mib",
    "segment-size-zero",
    "version-c1",
    "version-c2",
    "key-id-length",
]
# (Range header, plaintext slice): before any damage to segments 1 and 2, across the
# boundary of segments 0 and 1, the end (spanning the last segment), and whole.
READS = [
    ("bytes=0-99", slice(0, 100)),
    (f"bytes={MIB - 50}-{MIB + 49}", slice(MIB - 50, MIB + 50)),
    ("bytes=-100", slice(SIZE - 100, SIZE)),
    (None, slice(0, SIZE)),
]


def _exact_or_failed(result: Download, expected: bytes, what: str) -> bool:
    """True when the right bytes came whole; False when the read failed as it may (a cut
    stream, or the integrity problem); anything else fails the test."""
    if result.body is None:
        assert result.error, (what, result)
        return False
    if result.status in (200, 206):
        assert int(result.headers["content-length"]) == len(result.body), what
        assert result.body == expected, f"{what}: {result.status} with other bytes"
        return True
    assert result.status == 500, (what, result.status, result.body[:300])
    assert result.headers["content-type"].startswith("application/problem+json"), what
    body = json.loads(result.body)
    assert body["type"].endswith("integrity"), (what, body)
    assert "Traceback" not in result.body.decode(), what
    return False


@pytest.fixture(scope="module")
def keys_of(server: ServerThread, settings: Settings, database_url: str) -> DataKeys:
    tenant = make_tenant(settings, database_url)
    with server.client() as http:
        return data_keys(http, tenant)


@pytest.mark.parametrize("how", HOW)
def test_a_blob_changed_in_the_store_reads_exactly_or_fails(
    server: ServerThread, settings: Settings, keys_of: DataKeys, how: str
) -> None:
    data, ref = os.urandom(SIZE), _ref()
    with server.client() as http:
        meta = uploaded(http, keys_of.ingest, ref, data)
        path = _only_blob(blob_root(settings), meta["id"])
        path.write_bytes(_tampered(path.read_bytes(), how))
        url = artefact_url(ref, meta["id"], "content")
        outcomes = {}
        for header, part in READS:
            headers = auth(keys_of.read) | ({"Range": header} if header else {})
            outcomes[header] = _exact_or_failed(
                download(http, url, headers), data[part], f"{how} {header}"
            )
        exported = download(http, subject_url(ref, "export"), auth(keys_of.read))
        assert http.get("/healthz").status_code == 200
    # The whole object is never served from a cut or reordered blob (a range of intact
    # segments at their own places may be); bytes appended after the last segment are
    # outside every plan and change nothing.
    if how == "junk-appended":
        assert all(outcomes.values()), outcomes
    else:
        assert not outcomes[None], outcomes
    if how in ("cut-at-boundary", "cut-inside-last", "middle-dropped"):
        assert not outcomes["bytes=-100"], outcomes
    if exported.body is not None and exported.status == 200:
        # A whole ZIP only with the artefact's exact bytes inside.
        archive = zipfile.ZipFile(io.BytesIO(exported.body))
        names = [n for n in archive.namelist() if n.startswith(f"artefacts/{meta['id']}/")]
        assert names and archive.read(names[0]) == data, how
        assert how == "junk-appended", f"{how}: export completed from a damaged blob"
    else:
        assert exported.body is None or exported.status >= 500, (how, exported.status)


@pytest.mark.parametrize("source", ["same-subject", "other-subject", "other-tenant"])
def test_a_blob_copied_over_another_artefacts_never_opens(
    server: ServerThread,
    settings: Settings,
    database_url: str,
    keys_of: DataKeys,
    source: str,
) -> None:
    victim_ref = _ref()
    donor_keys = keys_of
    donor_ref = victim_ref if source == "same-subject" else _ref()
    victim_data, donor_data = os.urandom(SIZE), os.urandom(SIZE)
    root = blob_root(settings)
    with server.client() as http:
        if source == "other-tenant":
            donor_keys = data_keys(http, make_tenant(settings, database_url))
        victim = uploaded(http, keys_of.ingest, victim_ref, victim_data)
        donor = uploaded(http, donor_keys.ingest, donor_ref, donor_data)
        _only_blob(root, victim["id"]).write_bytes(_only_blob(root, donor["id"]).read_bytes())
        url = artefact_url(victim_ref, victim["id"], "content")
        for header, part in READS:
            headers = auth(keys_of.read) | ({"Range": header} if header else {})
            result = download(http, url, headers)
            assert not _exact_or_failed(result, victim_data[part], f"{source} {header}")
            if result.body is not None:
                assert donor_data[part][:64] not in result.body


def test_a_blob_put_back_after_its_artefact_was_deleted_does_not_open(
    server: ServerThread, settings: Settings, keys_of: DataKeys
) -> None:
    """Restoring a blob from a backup after the shred: the row is deleted and its data
    key destroyed, so the bytes in the store open for nobody."""
    data, ref = os.urandom(300_000), _ref()
    root = blob_root(settings)
    with server.client() as http:
        meta = uploaded(http, keys_of.ingest, ref, data)
        path = _only_blob(root, meta["id"])
        backup = path.read_bytes()
        deleted = http.delete(artefact_url(ref, meta["id"]), headers=auth(keys_of.ingest))
        assert deleted.status_code == 204
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(backup)
        url = artefact_url(ref, meta["id"], "content")
        results = [
            download(http, url, auth(keys_of.read)),
            download(http, url, auth(keys_of.read) | {"Range": "bytes=0-99"}),
            download(http, url, auth(keys_of.compliance)),
        ]
        exported = http.get(subject_url(ref, "export"), headers=auth(keys_of.read))
    for result in results:
        assert result.status in (404, 410), result.status
        assert result.body is None or data[:64] not in result.body
    assert data[:64] not in exported.content


def test_an_integrity_failure_logs_no_key_plaintext_or_subject_reference(
    server: ServerThread,
    settings: Settings,
    keys_of: DataKeys,
    capsys: pytest.CaptureFixture[str],
    vault_logging: None,
) -> None:
    data, ref = os.urandom(SIZE), _ref()
    with server.client() as http:
        meta = uploaded(http, keys_of.ingest, ref, data)
        path = _only_blob(blob_root(settings), meta["id"])
        raw = path.read_bytes()
        header, units = _split(raw)
        path.write_bytes(header + units[1] + units[0] + units[2])
        url = artefact_url(ref, meta["id"], "content")
        results = [
            download(http, url, auth(keys_of.read) | {"Range": "bytes=0-99"}),
            download(http, url, auth(keys_of.read)),
        ]
        # And failures after the status line: a second artefact cut in its last segment,
        # read whole (a streamed answer, cut) and in the subject's export (cut).
        cut = uploaded(http, keys_of.ingest, ref, data)
        cut_path = _only_blob(blob_root(settings), cut["id"])
        cut_path.write_bytes(cut_path.read_bytes()[:-100])
        streamed = download(http, artefact_url(ref, cut["id"], "content"), auth(keys_of.read))
        exported = download(http, subject_url(ref, "export"), auth(keys_of.read))
    assert streamed.body is None and exported.body is None, (streamed, exported.status)
    assert results[0].status == 500 and results[0].body is not None
    problem_body = results[0].body.decode()
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    everything = problem_body + "\n".join(lines)
    salt_and_prefix = header[2 + raw[1] + 4 : 2 + raw[1] + 4 + 39]
    for leaked in (ref, data[:16].hex(), salt_and_prefix.hex(), keys_of.read["secret"]):
        assert leaked not in everything, leaked[:12]
    assert data[:32] not in everything.encode("utf-8", "surrogateescape")


def _integrity_failures(http: Any, kind: str = "ciphertext") -> float:
    """datavault_integrity_failures_total{kind=...} on /metrics (0 before the series'
    first failure)."""
    text = http.get("/metrics").text
    series = f'datavault_integrity_failures_total{{kind="{kind}"}} '
    lines = [line for line in text.splitlines() if line.startswith(series)]
    return float(lines[0].removeprefix(series)) if lines else 0.0


def test_an_integrity_failure_answered_as_a_problem_is_counted_for_the_alert(
    server: ServerThread, settings: Settings, keys_of: DataKeys
) -> None:
    data, ref = os.urandom(SIZE), _ref()
    with server.client() as http:
        meta = uploaded(http, keys_of.ingest, ref, data)
        path = _only_blob(blob_root(settings), meta["id"])
        header, units = _split(path.read_bytes())
        path.write_bytes(header + units[1] + units[0] + units[2])
        before = _integrity_failures(http)
        url = artefact_url(ref, meta["id"], "content")
        result = download(http, url, auth(keys_of.read) | {"Range": "bytes=0-99"})
        assert result.status == 500
        assert _integrity_failures(http) == before + 1


@pytest.mark.parametrize("read", ["whole-download", "export"])
def test_an_integrity_failure_that_cuts_a_stream_is_counted_for_the_alert(
    server: ServerThread, settings: Settings, keys_of: DataKeys, read: str
) -> None:
    """The last segment cut in the store: a whole download (streamed, > 1 MiB) opens its
    first segment before the status line and fails at the last, so the answer is cut
    (held above); the alert that tells the operator the store was tampered with
    (deploy/prometheus/alerts.yaml DatavaultIntegrityFailure) watches a counter that only
    the problem handler increments, which a cut stream never reaches."""
    data, ref = os.urandom(SIZE), _ref()
    with server.client() as http:
        meta = uploaded(http, keys_of.ingest, ref, data)
        path = _only_blob(blob_root(settings), meta["id"])
        path.write_bytes(path.read_bytes()[:-100])
        before = _integrity_failures(http)
        url = (
            artefact_url(ref, meta["id"], "content")
            if read == "whole-download"
            else subject_url(ref, "export")
        )
        result = download(http, url, auth(keys_of.read))
        assert result.body is None and result.error, (result.status, result.error)
        assert _integrity_failures(http) == before + 1  # once: where found, not again when cut


def test_a_blob_removed_behind_a_live_artefact_is_reported_as_lost_not_as_an_outage(
    server: ServerThread, settings: Settings, keys_of: DataKeys
) -> None:
    """DESIGN.md "Failure behaviour": 503 with Retry-After is for a store that is down.
    A store that answers, and has no object where a live artefact's row says one is, has
    lost it (or someone removed it): clients retrying every 5 s will never get it, and
    the operator's DatavaultIntegrityFailure alert, which fires for the same blob cut to
    zero bytes, stays silent."""
    data, ref = os.urandom(300_000), _ref()
    with server.client() as http:
        meta = uploaded(http, keys_of.ingest, ref, data)
        _only_blob(blob_root(settings), meta["id"]).unlink()
        before = _integrity_failures(http, "blob_missing")
        result = download(http, artefact_url(ref, meta["id"], "content"), auth(keys_of.read))
        after = _integrity_failures(http, "blob_missing")
    assert result.body is not None and data[:64] not in result.body
    assert result.headers["content-type"].startswith("application/problem+json")
    assert result.status != 503 or "retry-after" not in result.headers, result.status
    assert result.status == 500 and "retry-after" not in result.headers
    problem = json.loads(result.body)
    assert problem["type"].endswith("/blob-missing"), problem
    assert problem["detail"] == "the artefact's stored data is missing"
    assert after == before + 1  # its own kind: DatavaultIntegrityFailure pages on any kind


@pytest.mark.parametrize("stored", [2 * MIB, 64 * MIB])
def test_a_header_whose_segment_size_was_rewritten_is_refused_against_the_row(
    server: ServerThread, settings: Settings, keys_of: DataKeys, stored: int
) -> None:
    """Finding 4's mitigation: the header's segment size is checked against the row's
    (artefacts.segment_size) before any segment is read, so a seek answers the integrity
    problem, counted once, without reading and opening a 64 MiB segment on the loop."""
    data, ref = os.urandom(SIZE), _ref()
    with server.client() as http:
        meta = uploaded(http, keys_of.ingest, ref, data)
        path = _only_blob(blob_root(settings), meta["id"])
        path.write_bytes(_with_segment_size(path.read_bytes(), stored))
        before = _integrity_failures(http)
        url = artefact_url(ref, meta["id"], "content")
        result = download(http, url, auth(keys_of.read) | {"Range": "bytes=0-99"})
        after = _integrity_failures(http)
    assert result.status == 500 and result.body is not None
    assert json.loads(result.body)["type"].endswith("/integrity")
    assert after == before + 1


def test_the_same_bytes_uploaded_twice_share_no_key_salt_or_nonce(
    server: ServerThread, settings: Settings, keys_of: DataKeys
) -> None:
    """An upload retried (by a client, or after a crash mid-upload) is a new upload: a
    new data key, salt and nonce prefix, so no segment is ever sealed twice under one
    (key, nonce); identical plaintext gives unrelated ciphertext."""
    data, ref = os.urandom(MIB + 7), _ref()
    root = blob_root(settings)
    with server.client() as http:
        first = uploaded(http, keys_of.ingest, ref, data)
        second = uploaded(http, keys_of.ingest, ref, data)
    raws = [_only_blob(root, meta["id"]).read_bytes() for meta in (first, second)]
    headers = [_split(raw)[0] for raw in raws]
    key_ids = [header[2 : 2 + header[1]] for header in headers]
    at = 2 + raws[0][1] + 4
    assert key_ids[0] != key_ids[1]
    assert headers[0][at : at + 32] != headers[1][at : at + 32]  # salt
    assert headers[0][at + 32 : at + 39] != headers[1][at + 32 : at + 39]  # nonce prefix
    assert _split(raws[0])[1][0][:16] != _split(raws[1])[1][0][:16]
