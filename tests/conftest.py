"""Shared fixtures: one real PostgreSQL (embedded wheel, or DATABASE_URL) per session,
a migrated database, and a vault server on 127.0.0.1 that trusts X-Forwarded-For from
loopback so tests can speak for many client addresses."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx._transports.default as httpx_transport
import pytest

from tests.seaweed import SeaweedS3, running_seaweed
from tests.support import (
    ServerThread,
    Tenant,
    make_tenant,
    new_database,
    outside_pytest_tmp,
    private_server,
    remove_after_exit,
    running_server,
    stop_embedded_postgres,
    throwaway_postgres,
)
from vault.config import Settings

# Every httpx client loads the CA bundle into a new SSL context (~10-20 ms of CPU), and the
# suite makes thousands of clients, all speaking plain HTTP to 127.0.0.1 (its one HTTPS
# test brings its own context). One context with httpx's default verification serves them
# all; SSL contexts are made to be shared.
_default_ssl_context = functools.cache(httpx.create_ssl_context)


def _shared_ssl_context(
    verify: Any = True, cert: Any = None, trust_env: bool = True
) -> ssl.SSLContext:
    if verify is True and cert is None:
        return _default_ssl_context(True, None, trust_env)
    return httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)


# The name the transport calls (httpx._transports.default imported it from httpx._config).
httpx_transport.create_ssl_context = _shared_ssl_context  # type: ignore[attr-defined]


# The tests' own HTTP clients log each request's URL at INFO (a playback link's token is
# in its path). Those are the test harness's lines, not the vault's, but a test that sets
# the root logger to INFO (configure_logging, as the vault does) lets them into the output
# that later tests search for leaked secrets: they stay at WARNING.
for _client_logger in ("httpx", "httpcore"):
    logging.getLogger(_client_logger).setLevel(logging.WARNING)


# The floor of tests that must run (--min-tests) is a plugin of its own, so that its
# tests can run pytest with it alone.
pytest_plugins = ("tests.min_tests",)


# --- the longest modules first -------------------------------------------------------------
# `make pytest` hands whole modules to its xdist workers (--dist loadfile, in collection
# order: --no-loadscope-reorder), so the run ends no sooner than its longest module
# started plus that module's time. These, measured longest (a `-n 4 --durations=0` run,
# each module's setup, call and teardown times added up: every module of 8 s or more,
# longest first), are collected first, so no worker starts one of them late and the run
# ends on short modules; the rest keep their order.
# Only scheduling depends on the list: a module missing from it still runs.
LONGEST_MODULES = (
    "tests/model/test_deletion_model.py",
    "tests/integration/test_ledger_signing.py",
    "tests/integration/test_access_anchor_history.py",
    "tests/e2e/test_worker_crash.py",
    "tests/e2e/test_answers_hold_their_keys.py",
    "tests/e2e/test_listing_subjects_page_cost.py",
    "tests/integration/test_ledger_compaction.py",
    "tests/e2e/test_redteam14_seek_logged_ahead.py",
    "tests/e2e/test_redteam8_hold_snapshot_race.py",
    "tests/model/test_restore_model.py",
    "tests/e2e/test_upload_memory.py",
    "tests/e2e/test_embedded_defaults.py",
    "tests/console/test_console_browser_officer.py",
    "tests/e2e/test_export_memory.py",
    "tests/integration/test_webhook_delivery.py",
    "tests/integration/test_blob_stores.py",
    "tests/unit/test_cli_no_vault.py",
    "tests/api/test_redteam7_batches.py",
    "tests/api/test_records.py",
    "tests/integration/test_restore_lines.py",
    "tests/e2e/test_transfer_cut_on_restriction.py",
    "tests/api/test_playback_links.py",
    "tests/console/test_console_browser.py",
    "tests/e2e/test_redteam10_request_path.py",
    "tests/integration/test_redteam4_restore.py",
    "tests/integration/test_restore_keeps_instructions.py",
    "tests/integration/test_redteam3_restore.py",
    "tests/e2e/test_redteam8_page_cost.py",
    "tests/integration/test_disclosure_chain.py",
    "tests/integration/test_audit_chain.py",
    "tests/e2e/test_seek_logged_ahead.py",
    "tests/api/test_subjects.py",
    "tests/e2e/test_transfer_cut.py",
    "tests/e2e/test_redteam10_export_unclaimed_keys.py",
    "tests/integration/test_restore_tightens.py",
    "tests/e2e/test_playback_browser.py",
    "tests/integration/test_shred_ledger.py",
    "tests/e2e/test_redteam6_drain_slow_unwind.py",
    "tests/e2e/test_redteam6_seek_outlives_erasure.py",
    "tests/integration/test_artefacts_on_s3.py",
    "tests/e2e/test_video_seek.py",
    "tests/unit/test_startup_imports.py",
    "tests/api/test_tenant_isolation_subjects.py",
    "tests/e2e/test_first_run_banner.py",
    "tests/integration/test_receipts.py",
    "tests/integration/test_held_erasure_queue.py",
    "tests/integration/test_ledger_watermark.py",
    "tests/integration/test_webhook_events.py",
    "tests/integration/test_redteam24_s3_stream_reads.py",
    "tests/api/test_openapi.py",
    "tests/api/test_redteam17_hold_coverage.py",
    "tests/e2e/test_blob_store_outage.py",
    "tests/integration/test_redteam21_closure_deadlock.py",
    "tests/e2e/test_redteam8_cut_answer_logged.py",
    "tests/e2e/test_redteam5_export_outlives_erasure.py",
    "tests/api/test_erasure.py",
    "tests/integration/test_redteam5_webhook_deleted.py",
    "tests/api/test_artefacts.py",
    "tests/e2e/test_redteam9_hold_during_rotation.py",
    "tests/api/test_redteam17_retention.py",
    "tests/api/test_api_keys.py",
    "tests/e2e/test_ledger_crash.py",
    "tests/unit/test_min_tests_guard.py",
    "tests/integration/test_key_rotation.py",
    "tests/api/test_kept_data_rules.py",
    "tests/unit/test_redteam16_router_cache.py",
    "tests/e2e/test_redteam5_drain_access_log.py",
    "tests/integration/test_restore_standing.py",
    "tests/api/test_redteam19_stored_blob_tamper.py",
    "tests/e2e/test_graceful_shutdown.py",
    "tests/unit/test_redteam15_router.py",
    "tests/integration/test_redteam19_s3_tamper.py",
    "tests/e2e/test_redteam9_cut_rows.py",
    "tests/api/test_webhooks.py",
    "tests/integration/test_epoch_under_traffic.py",
    "tests/api/test_every_instruction.py",
    "tests/api/test_text_input.py",
    "tests/api/test_holds.py",
    "tests/integration/test_erasure_wakeups.py",
    "tests/e2e/test_redteam10_confirm_drops_fresh_hold.py",
    "tests/unit/test_cli_json_errors.py",
    "tests/e2e/test_redteam24_connection_cuts.py",
    "tests/console/test_console_http.py",
    "tests/client/test_client_streaming.py",
    "tests/api/test_redteam3_races.py",
    "tests/e2e/test_playback_cut.py",
    "tests/integration/test_redteam24_erasure_batches.py",
)


@pytest.hookimpl(trylast=True)  # after pytest's own fixture-scope ordering, kept per module
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: place for place, module in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from vault.db.embedded import embedded_postgres_url

    # Outside pytest's own temp tree (whose 0700 parents the server's user cannot pass
    # when stopping). Stopped here rather than by the wheel's exit handler: an xdist
    # worker ends without running exit handlers, which left a server and its directory
    # behind for every worker of every run.
    pg_dir = Path(tempfile.mkdtemp(prefix="datavault-test-pg-"))
    try:
        url = embedded_postgres_url(pg_dir)
        throwaway_postgres(url)
        yield url
    finally:
        stop_embedded_postgres(pg_dir)
        remove_after_exit(pg_dir)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> str:
    return new_database(pg_admin_url)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vault-data")


# The session vault's deployment settings; `own_vault` serves a module with the same.
_SESSION_SETTINGS: dict[str, Any] = {
    "trusted_proxies": (ipaddress.ip_network("127.0.0.1/32"),),
    "auth_failure_limit": 5,
    "auth_failure_window_seconds": 60,
}


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, **_SESSION_SETTINGS)


@pytest.fixture(scope="session")
def server(settings: Settings, database_url: str) -> Iterator[ServerThread]:
    """The session's vault, without background jobs: a test that needs a job's effect
    runs one pass by hand (tests/jobs.py), at the present time only (a moved clock would
    reach other tests' data: use quiet_vault or a database of its own for that), and
    better on its module's own_vault: here a pass carries the whole session's backlog."""
    with running_server(settings, database_url) as running:
        yield running


@pytest.fixture(scope="module")
def quiet_vault(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """A vault on a database of its own with no background jobs, for the test module: its
    tests run the jobs by hand with a moved clock (tests/jobs.py) instead of waiting."""
    with private_server(pg_admin_url, tmp_path_factory.mktemp("quiet-vault")) as server:
        yield server


@pytest.fixture(scope="module")
def own_vault(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """The session vault's settings on a database of its own, for a test module whose
    tests run worker passes at the present time: on the session's vault every pass works
    through all the erasures and holds the whole session left queued (held ones are
    re-checked each pass), which made a one-erasure test take 15-20 s late in a run. A
    module uses it as its `server` (`tenant`/`new_tenant` follow `server`):

        @pytest.fixture(scope="module")
        def server(own_vault: ServerThread) -> ServerThread:
            return own_vault
    """
    with private_server(
        pg_admin_url, tmp_path_factory.mktemp("own-vault"), **_SESSION_SETTINGS
    ) as server:
        yield server


@pytest.fixture
def vault_logging() -> Iterator[None]:
    """The vault's own logging for one test (JSON lines, secret fields dropped, as
    `configure_logging` sets it up in a server), and the harness's back afterwards.
    structlog's configuration and the root logger are the process's: a test that left
    them set changed the format every later test of its worker read from the vault's
    output (red team 12's outage test, looking for `route=`, failed after one did)."""
    import structlog

    from vault.observability.logging import configure_logging

    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("info")
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers = handlers
        root.setLevel(level)


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    """A test's own directory for a vault that starts the embedded PostgreSQL itself (no
    DATABASE_URL), outside pytest's temp tree (tests/support.py outside_pytest_tmp)."""
    with outside_pytest_tmp("datavault-test-embedded-") as path:
        yield path


@pytest.fixture
def private_vault(pg_admin_url: str, tmp_path: Path) -> Settings:
    """A vault of its own: its own database and data dir (root key file, blobs, ledger),
    for tests that change deployment-wide state (epochs, receipt keys, grants, restores)."""
    return Settings(data_dir=tmp_path / "data", database_url=new_database(pg_admin_url))


@pytest.fixture
def new_tenant(server: ServerThread) -> Callable[[], Tenant]:
    """A tenant of the vault the test talks to (the session's, or a module's `server`)."""
    return lambda: make_tenant(server.settings, server.database_url)


@pytest.fixture
def tenant(new_tenant: Callable[[], Tenant]) -> Tenant:
    return new_tenant()


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 gateway on 127.0.0.1 for the session, with AWS_* credentials
    for boto3 set in the environment while it runs (restored afterwards)."""
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server
