"""A playback link in a real browser (Debian's Chromium headless shell driven by Playwright,
launched as the console's browser tests launch it): a WebM (VP9/Opus, made by ffmpeg
here) plays in a `<video>` from the link alone, seeks to the middle and plays on; every
request the player made is in the access log under the minting key; the same link is dead
(404, and the player reports an error) after the subject's erasure and after the minting
key's revocation (API.md "Playback links")."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.api.helpers import access_log, auth, create_key, data_keys, subject_url, uploaded
from tests.console.browser_support import CHROMIUM
from tests.console.browser_support import CHROMIUM_ARGS as CONSOLE_CHROMIUM_ARGS
from tests.jobs import run_worker_pass
from tests.support import ServerThread, Tenant, free_port, make_tenant, private_server

T = TypeVar("T")

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "playback"
CHROMIUM_ARGS = [
    *CONSOLE_CHROMIUM_ARGS,
    # A test page has no user to click play.
    "--autoplay-policy=no-user-gesture-required",
]
DURATION = 10
LINK_ROUTE = "/playback/{token}"
# The browser's address as the access log should see it (the vault trusts the loopback
# proxy header in this test, as behind a real proxy).
VIEWER_IP = "198.51.100.23"


def _in_thread(call: Callable[[], T]) -> T:
    """Run `call` (which runs a coroutine with asyncio.run) in another thread: Playwright's
    sync API owns the event loop of this one."""
    result: list[T] = []
    worker = threading.Thread(target=lambda: result.append(call()))
    worker.start()
    worker.join()
    assert result, "the call failed (its traceback is above)"
    return result[0]


def _tenant(vault: ServerThread) -> Tenant:
    return _in_thread(lambda: make_tenant(vault.settings, vault.database_url))


def _make_webm(path: Path) -> bytes:
    """10 s of VP9 video and Opus audio. Noise keeps the bitrate up (about 5 MB), so the
    middle of the file is far from what the first read buffered; a keyframe every second
    (-g 25) lets the player start decoding near where it seeks."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed (installed by `make test`)"
    subprocess.run(
        [
            ffmpeg, "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=duration={DURATION}:size=320x240:rate=25",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={DURATION}",
            "-vf", "noise=alls=60:allf=t",
            "-c:v", "libvpx-vp9", "-b:v", "4M", "-deadline", "realtime", "-cpu-used", "8",
            "-row-mt", "1", "-g", "25",
            "-c:a", "libopus", "-b:a", "64k", "-shortest", str(path),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return path.read_bytes()


@pytest.fixture(scope="module")
def vault(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A vault that knows its own address (no DATAVAULT_PUBLIC_URL: links are
    http://127.0.0.1:<port>/playback/…), so the browser gets the minted URL unchanged."""
    with private_server(
        pg_admin_url,
        tmp_path_factory.mktemp("playback-browser"),
        listen_port=free_port(),
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def webm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _make_webm(tmp_path_factory.mktemp("media") / "call.webm")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def _page(browser: Browser) -> Page:
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": VIEWER_IP})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.set_content("<!doctype html><title>player</title><body></body>")
    return page


def _load(page: Page, url: str) -> None:
    """A fresh `<video>` for `url` (muted: nothing to hear in a test). preload=metadata:
    the player reads what it needs to start, so a seek needs ranges of its own."""
    page.evaluate(
        """url => {
            document.body.replaceChildren();
            const video = document.createElement('video');
            video.id = 'player'; video.muted = true; video.preload = 'metadata'; video.src = url;
            document.body.append(video);
        }""",
        url,
    )


def _mint(http: httpx.Client, key: dict[str, Any], ref: str, artefact_id: str) -> str:
    answer = http.post(subject_url(ref, "artefacts", artefact_id, "links"), headers=auth(key))
    assert answer.status_code == 201, answer.text
    url: str = answer.json()["url"]
    return url


def test_a_link_plays_seeks_and_plays_on_in_chromium(
    vault: ServerThread, browser: Browser, webm: bytes
) -> None:
    tenant = _tenant(vault)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with vault.client() as http:
        keys = data_keys(http, tenant)
        player = create_key(http, tenant, ["read"])
        artefact = uploaded(http, keys.ingest, ref, webm, content_type="video/webm",
                            filename="call.webm")  # fmt: skip
        url = _mint(http, player, ref, artefact["id"])
    assert url.startswith(vault.base_url + "/playback/dvp_"), url

    page = _page(browser)
    ranges: list[str] = []
    page.on(
        "request",
        lambda r: ranges.append(r.headers.get("range", "-")) if r.url == url else None,
    )
    _load(page, url)
    page.wait_for_function(
        "() => document.getElementById('player').readyState >= 1"  # HAVE_METADATA
    )
    duration = page.evaluate("() => document.getElementById('player').duration")
    assert abs(duration - DURATION) < 0.5, duration
    page.evaluate("() => document.getElementById('player').play()")
    page.wait_for_function("() => document.getElementById('player').currentTime > 0.5")

    middle = duration / 2
    page.evaluate(
        """middle => new Promise(resolve => {
            const video = document.getElementById('player');
            video.addEventListener('seeked', resolve, {once: true});
            video.currentTime = middle;
        })""",
        middle,
    )
    after_seek = page.evaluate("() => document.getElementById('player').currentTime")
    assert middle - 0.1 <= after_seek < middle + 1.0, after_seek
    # It plays on from the middle: the clock advances by more than a second.
    page.wait_for_function(
        f"() => document.getElementById('player').currentTime > {after_seek + 1.0}"
    )
    state = page.evaluate(
        """() => { const v = document.getElementById('player');
                   return {error: v.error && v.error.code, paused: v.paused,
                           width: v.videoWidth, time: v.currentTime}; }"""
    )
    assert state["error"] is None and state["paused"] is False, state
    assert state["width"] == 320 and state["time"] < DURATION, state
    page.screenshot(path=str(SHOTS / "playing-after-seek.png"))
    page.evaluate("() => document.getElementById('player').pause()")

    # Every request the player made is in the access log, under the key that minted the
    # link, from the browser's address, for this artefact; the seek was served as a range.
    with vault.client() as http:
        rows = [
            r for r in access_log(http, keys.compliance, api_key_id=player["id"])
            if r["route"] == LINK_ROUTE
        ]  # fmt: skip
    assert rows, "the player's requests are not in the access log"
    assert {r["ip"] for r in rows} == {VIEWER_IP}, rows
    assert {r["artefact_id"] for r in rows} == {artefact["id"]}
    assert {r["subject_ref_hash"] for r in rows} == {artefact["subject_ref_hash"]}
    # 499: the player hung up on a response it no longer needed (a seek does that).
    assert {r["status"] for r in rows} <= {200, 206, 499}, rows
    assert 206 in {r["status"] for r in rows}, rows
    # preload=metadata: the player read the start, then seeked with ranges of its own
    # (the WebM's cues sit at its end, and the middle was not buffered yet).
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranges if r.startswith("bytes=")]
    assert any(start > 0 for start in starts), ranges
    print(
        f"<video> from a playback link: {len(rows)} requests (Range {ranges}), statuses "
        f"{sorted(r['status'] for r in rows)}, {sum(r['bytes_out'] for r in rows)} bytes of "
        f"a {len(webm)}-byte WebM; after the seek to {middle:.1f} s it played to "
        f"{state['time']:.1f} s"
    )
    page.context.close()


def _dead_in_the_browser(browser: Browser, url: str) -> None:
    page = _page(browser)
    _load(page, url)
    page.wait_for_function("() => document.getElementById('player').error !== null")
    # MEDIA_ERR_SRC_NOT_SUPPORTED: what a player reports for a 404.
    assert page.evaluate("() => document.getElementById('player').error.code") == 4
    page.context.close()


def test_the_same_link_is_dead_after_the_subjects_erasure(
    vault: ServerThread, browser: Browser, webm: bytes
) -> None:
    tenant = _tenant(vault)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with vault.client() as http:
        keys = data_keys(http, tenant)
        artefact = uploaded(http, keys.ingest, ref, webm, content_type="video/webm")
        url = _mint(http, keys.read, ref, artefact["id"])
        assert httpx.head(url).status_code == 200
        privacy = create_key(http, tenant, ["erasure"])
        assert http.post(subject_url(ref, "erasure"), headers=auth(privacy)).status_code == 202
    _in_thread(lambda: run_worker_pass(vault))
    assert httpx.get(url).status_code == 404
    assert httpx.head(url).status_code == 404
    _dead_in_the_browser(browser, url)


def test_the_same_link_is_dead_after_the_minting_keys_revocation(
    vault: ServerThread, browser: Browser, webm: bytes
) -> None:
    tenant = _tenant(vault)
    ref = f"caller-{uuid.uuid4().hex[:10]}"
    with vault.client() as http:
        keys = data_keys(http, tenant)
        player = create_key(http, tenant, ["read"])
        artefact = uploaded(http, keys.ingest, ref, webm, content_type="video/webm")
        url = _mint(http, player, ref, artefact["id"])
        assert httpx.get(url, headers={"Range": "bytes=0-99"}).status_code == 206
        revoked = http.delete(f"/v1/api-keys/{player['id']}", headers=tenant.auth())
        assert revoked.status_code == 204
    assert httpx.get(url).status_code == 404
    _dead_in_the_browser(browser, url)
    with vault.client() as http:
        rows = access_log(http, keys.compliance, api_key_id=player["id"])
    refused = [r for r in rows if r["route"] == LINK_ROUTE and r["status"] == 404]
    assert refused and {r["ip"] for r in refused} >= {VIEWER_IP}, rows
