"""A video player seeks in a stored recording: ffprobe and ffmpeg read an H.264 MP4 straight
from the content URL with an API key, and ffmpeg's seek is served with 206 range responses
(API.md "Artefacts": `Range`, `Accept-Ranges`; "Access log")."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import (
    access_log,
    artefact_url,
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
    # object and needs a range of its own rather than the bytes of the first read.
    subprocess.run(
        [
            _tool("ffmpeg"), "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=duration={DURATION}:size=320x240:rate=25",
            "-vf", "noise=alls=80:allf=t", "-c:v", "libx264", "-b:v", "8M",
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
            _tool("ffmpeg"), "-loglevel", "error", "-y",
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
    # A seek into the middle of a 7 MB file: the bytes served are well below the whole.
    served = sum(r["bytes"] for r in content_rows)
    print(
        f"ffmpeg -ss 4: {len(content_rows)} content requests, "
        f"{len(ranged)} answered 206, {served} bytes for a {len(video['data'])}-byte file"
    )
