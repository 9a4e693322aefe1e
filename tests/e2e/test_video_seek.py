"""A video player seeks in a stored recording: ffprobe and ffmpeg read an H.264 MP4 straight
from the content URL with an API key, and ffmpeg's seek is served with 206 range responses
(API.md "Artefacts": `Range`, `Accept-Ranges`; "Access log")."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
    auth,
    create_key,
    data_keys,
    uploaded,
    wait_for,
)
from tests.support import ServerThread, Tenant, make_tenant

CONTENT_ROUTE = "/v1/subjects/{ref}/artefacts/{artefact_id}/content"
DURATION = 6


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is needed (installed by `make test`)"
    return found


def _make_video(path: Path) -> bytes:
    # Noise keeps the bitrate up (~7 MB for 6 s), so seeking to 4 s lands far into the
    # object and needs a range of its own rather than the bytes of the first read. A
    # keyframe every second (-g 25): with libx264's default of one every 250 frames the
    # only keyframe is at 0 s, and a player must read from the start to show 4 s.
    subprocess.run(
        [
            _tool("ffmpeg"), "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=duration={DURATION}:size=320x240:rate=25",
            "-vf", "noise=alls=80:allf=t", "-c:v", "libx264", "-b:v", "8M", "-g", "25",
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return path.read_bytes()


def _headers(secret: str) -> str:
    return f"Authorization: Bearer {secret}\r\n"


@pytest.fixture(scope="module")
def stored_video(server: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One recording, encoded and stored once for the module (encoding is the slow part)."""
    data = _make_video(tmp_path_factory.mktemp("video") / "in.mp4")
    tenant = make_tenant(server.settings, server.database_url)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, data, content_type="video/mp4", filename="call.mp4")
    return {
        "tenant": tenant,
        "data": data,
        "meta": meta,
        "keys": keys,
        "url": server.base_url + artefact_url(ref, meta["id"], "content"),
    }


@pytest.fixture
def video(server: ServerThread, stored_video: dict[str, Any]) -> dict[str, Any]:
    """The stored recording and a player key of the test's own, so that the access-log
    rows under that key are this test's requests only."""
    with server.client() as http:
        player = create_key(http, stored_video["tenant"], ["read"])
    return {**stored_video, "player": player}


def test_ffprobe_reads_the_duration_over_http(video: dict[str, Any]) -> None:
    probe = subprocess.run(
        [
            _tool("ffprobe"), "-v", "error", "-headers", _headers(video["player"]["secret"]),
            "-show_format", "-of", "json", video["url"],
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    fmt = json.loads(probe.stdout)["format"]
    assert abs(float(fmt["duration"]) - DURATION) < 0.2, fmt
    assert "mp4" in fmt["format_name"]
    assert int(fmt["size"]) == len(video["data"])


def test_ffprobe_with_a_wrong_key_fails(video: dict[str, Any]) -> None:
    # From an address of its own (the session vault trusts 127.0.0.1 as a proxy): wrong
    # keys from 127.0.0.1 are throttled to 5 a minute for the whole worker (429, not 401),
    # and other tests spend that budget.
    own_address = f"X-Forwarded-For: 198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}\r\n"
    probe = subprocess.run(
        [
            _tool("ffprobe"), "-v", "error",
            "-headers", _headers("dv_aaaaaaaaaaaa_" + "A" * 43) + own_address,
            "-show_format", "-of", "json", video["url"],
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert probe.returncode != 0
    assert "401" in probe.stderr or "Unauthorized" in probe.stderr, probe.stderr


def _frame_at(
    source: str, seconds: float, headers: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """One decoded frame at `seconds` as raw RGB on stdout; ffmpeg's debug log (every
    HTTP request it makes, with its Range) on stderr."""
    return subprocess.run(
        [
            _tool("ffmpeg"), "-loglevel", "debug", "-nostdin",
            *(["-headers", headers] if headers else []),
            "-ss", str(seconds), "-i", source,
            "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
        ],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip


# ffmpeg's debug log prints each HTTP request it sends, its headers on the lines after.
_REQUEST = re.compile(r"request: GET (\S+) HTTP/1\.1\r?\n((?:[A-Za-z-]+: [^\n]*\n)*)")


def test_ffmpeg_seeks_to_4_seconds_with_range_requests(
    server: ServerThread, video: dict[str, Any], tmp_path: Path
) -> None:
    """What matters: the seek is served with ranges, the frame shown is the right one,
    and every request ffmpeg made is in the access log under the player's key, as 200 or
    206, or 499 where ffmpeg hung up before the vault had sent its answer (it stops
    reading as soon as it has the frame it wants: whether the vault's last bytes were
    already written by then is a race, and 499 is what the log rightly says then)."""
    local = tmp_path / "in.mp4"
    local.write_bytes(video["data"])
    grab = _frame_at(video["url"], 4, _headers(video["player"]["secret"]))
    assert grab.returncode == 0, grab.stderr.decode(errors="replace")[-3000:]
    log = grab.stderr.decode(errors="replace")

    # The right frame: exactly the one ffmpeg decodes at 4 s from the file itself, and
    # not the one at 1 s (noise makes every frame different).
    expected = _frame_at(str(local), 4)
    elsewhere = _frame_at(str(local), 1)
    assert len(grab.stdout) == 320 * 240 * 3
    assert grab.stdout == expected.stdout
    assert grab.stdout != elsewhere.stdout

    # The seek used ranges: a request from a byte well past the start of the file.
    requests = _REQUEST.findall(log)
    assert requests, log[-3000:]
    starts = [
        int(m[0]) for _, headers in requests if (m := re.findall(r"Range: bytes=(\d+)-", headers))
    ]
    size = len(video["data"])
    assert any(start > size // 4 for start in starts), starts
    # What the player read, by its own count: far less than the whole file.
    read = sum(int(n) for n in re.findall(r"Statistics: (\d+) bytes read", log))
    assert 0 < read < size // 2, (read, size)

    # Every request is in the access log, under the player's key and this artefact.
    with server.client() as http:
        rows: list[dict[str, Any]] = []

        def all_logged() -> bool:
            found = access_log(http, video["keys"].compliance, api_key_id=video["player"]["id"])
            rows[:] = [r for r in found if r["route"] == CONTENT_ROUTE]
            return len(rows) >= len(requests)

        assert wait_for(all_logged, timeout=15), (len(requests), rows)
    assert len(rows) == len(requests), (requests, rows)
    assert all(r["artefact_id"] == video["meta"]["id"] for r in rows), rows
    assert {r["status"] for r in rows} <= {200, 206, 499}, rows
    assert any(r["status"] in (206, 499) for r in rows), rows  # not only whole-file reads
    print(
        f"ffmpeg -ss 4: {len(requests)} requests from bytes {starts}, statuses "
        f"{sorted(r['status'] for r in rows)}, {read} bytes read of a {size}-byte file"
    )


def test_a_player_that_hangs_up_mid_download_is_still_in_the_access_log(
    server: ServerThread, tenant: Tenant
) -> None:
    """Players stop downloads all the time (a seek, a closed tab). The plaintext they got
    was an access like any other: DESIGN.md "Access log" logs every request, and "no
    unlogged access". 32 MiB is far more than loopback socket buffers hold, so the
    response is still streaming when the player hangs up."""
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        meta = uploaded(http, keys.ingest, ref, os.urandom(32 * 1024 * 1024))
    received = 0
    with server.client() as player:
        url = artefact_url(ref, meta["id"], "content")
        with player.stream("GET", url, headers=auth(keys.read)) as r:
            assert r.status_code == 200
            request_id = r.headers["X-Request-Id"]
            for chunk in r.iter_raw(64 * 1024):
                received += len(chunk)
                if received >= 256 * 1024:
                    break  # the player hangs up with most of the object unsent
    assert received >= 256 * 1024
    with server.client() as http:
        rows: list[dict[str, Any]] = []

        def logged() -> bool:
            rows[:] = [
                r for r in access_log(http, keys.compliance, api_key_id=keys.read["id"])
                if r["request_id"] == request_id
            ]  # fmt: skip
            return bool(rows)

        assert wait_for(logged, timeout=15), f"request {request_id} is not in the access log"
    (row,) = rows
    assert row["route"] == CONTENT_ROUTE
    assert row["artefact_id"] == meta["id"]
    assert row["bytes"] >= received
