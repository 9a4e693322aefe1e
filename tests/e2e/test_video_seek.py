"""A video player seeks in a stored recording: ffprobe and ffmpeg read an H.264 MP4 straight
from the content URL with an API key, and ffmpeg's seek is served with 206 range responses
(API.md "Artefacts": `Range`, `Accept-Ranges`; "Access log")."""

from __future__ import annotations

import json
import os
import re
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
from tests.support import ServerThread, Tenant

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


@pytest.fixture
def video(server: ServerThread, tenant: Tenant, tmp_path: Path) -> dict[str, Any]:
    data = _make_video(tmp_path / "in.mp4")
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with server.client() as http:
        keys = data_keys(http, tenant)
        player = create_key(http, tenant, ["read"])
        meta = uploaded(http, keys.ingest, ref, data, content_type="video/mp4", filename="call.mp4")
    return {
        "data": data,
        "meta": meta,
        "keys": keys,
        "player": player,
        "url": server.base_url + artefact_url(ref, meta["id"], "content"),
    }


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
    probe = subprocess.run(
        [
            _tool("ffprobe"), "-v", "error",
            "-headers", _headers("dv_aaaaaaaaaaaa_" + "A" * 43),
            "-show_format", "-of", "json", video["url"],
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert probe.returncode != 0
    assert "401" in probe.stderr or "Unauthorized" in probe.stderr, probe.stderr


def test_ffmpeg_seeks_to_4_seconds_with_range_requests(
    server: ServerThread, tenant: Tenant, video: dict[str, Any], tmp_path: Path
) -> None:
    frame = tmp_path / "frame.png"
    grab = subprocess.run(
        [
            # verbose: ffmpeg reports how many bytes it read ("Statistics: N bytes read").
            _tool("ffmpeg"), "-loglevel", "verbose", "-y",
            "-headers", _headers(video["player"]["secret"]),
            "-ss", "4", "-i", video["url"], "-frames:v", "1", "-f", "image2", str(frame),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert grab.returncode == 0, grab.stderr
    png = frame.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 1000

    with server.client() as http:
        rows: list[dict[str, Any]] = []

        def logged() -> bool:
            rows[:] = access_log(http, video["keys"].compliance, api_key_id=video["player"]["id"])
            return any(r["status"] == 206 for r in rows)

        assert wait_for(logged, timeout=10), rows
    content_rows = [r for r in rows if r["route"] == CONTENT_ROUTE]
    assert content_rows, rows
    assert {r["status"] for r in content_rows} <= {200, 206}, content_rows
    ranged = [r for r in content_rows if r["status"] == 206]
    assert ranged, content_rows
    assert all(r["artefact_id"] == video["meta"]["id"] for r in content_rows)
    size = len(video["data"])
    # ffmpeg asks for open-ended ranges (`bytes=0-`, then `bytes=<keyframe>-`) and hangs
    # up once it has what it needs; on loopback the vault has usually written the whole
    # tail into the socket buffers by then, so the log's bytes per request are the rest
    # of the file from where that request started, and their sum is no measure of what
    # the player downloaded. The seek's own request starts at the keyframe before 4 s:
    seek = min(ranged, key=lambda r: r["bytes"])
    assert seek["bytes"] < size // 2, (seek, size)
    # What the player actually read, by its own count: far less than the whole file.
    read = sum(int(n) for n in re.findall(r"Statistics: (\d+) bytes read", grab.stderr))
    assert 0 < read < size // 2, (read, size)
    print(
        f"ffmpeg -ss 4: {len(content_rows)} content requests, {len(ranged)} answered 206, "
        f"seek from byte {size - seek['bytes']}, {read} bytes read of a {size}-byte file"
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
