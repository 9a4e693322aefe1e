"""The connection pool and the one way request code gets a connection: `tenant_tx`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, TypeAlias

import asyncpg

from vault.errors import KeyNoLongerLive, SubjectChanged, Unavailable

Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"


class TenantFetchRow(Protocol):
    """`Database.tenant_fetchrow`, or the same call inside a caller's transaction."""

    def __call__(
        self, tenant_id: uuid.UUID, query: str, /, *args: object
    ) -> Awaitable[asyncpg.Record | None]: ...


APP_ROLE = "datavault_app"
# Requests never run as the URL's role (which may own the tables or be a superuser): the
# session switches to the application role, and every transaction sets it again together
# with the tenant, so row-level security always applies.
_SET_TENANT = (
    "SELECT set_config('role', 'datavault_app', true), set_config('datavault.tenant_id', $1, true)"
)

_SET_AUDITOR = (
    "SELECT set_config('role', 'datavault_auditor', true),"
    " set_config('datavault.tenant_id', '', true)"
)

# What a request function (migration 0011) raises when the API key it was asked to check
# is revoked or its tenant closed.
KEY_NOT_LIVE_SQLSTATE = "DV401"
# What the database raises for a key in a generation that is no longer current (0016), or
# for a data key wrapped under subject-key bytes a rewrap has replaced since (0018).
SUBJECT_CHANGED_SQLSTATES = frozenset({"DVG01", "DVK01"})
# What an access-log row that confirms a read's hold raises when the hold was lost (a
# database crash) and its key is destroyed since (dv_access_log_chain_holding, 0035).
HOLD_REFUSED_SQLSTATE = "DV410"

# The deployment-wide access-log chain and other rows that belong to no tenant.
DEPLOYMENT_TENANT = uuid.UUID(int=0)

# What asyncpg raises when the server is gone or refuses work; all become Unavailable.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    TimeoutError,
)

# What connecting or a ping meets when the database cannot be used now: the connection
# errors, and a connection asyncpg's protocol was left unable to use (a backend
# terminated mid-operation: `_database_errors`).
_UNUSABLE: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.InternalClientError)


@contextmanager
def _database_errors() -> Iterator[None]:
    """The server gone or refusing work: Unavailable. A request function's DV401: the
    request's key is no longer live."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise Unavailable("database unavailable") from exc
    except asyncpg.InternalClientError as exc:
        # asyncpg's protocol left in a state it cannot go on from. Seen when the server
        # terminated the backend in the middle of an operation (a failover,
        # pg_terminate_backend; asyncpg issue 1069): the database went away under the
        # request. `Database._connection` has closed that connection. Logged with its
        # cause, since the same error would also be what a connection used by two tasks
        # at once raises: a bug that must not pass as an outage. (asyncpg's messages
        # here name protocol states only.)
        _log_broken_connection(exc)
        raise Unavailable("database connection broken") from exc
    except asyncpg.PostgresError as exc:
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate == KEY_NOT_LIVE_SQLSTATE:
            raise KeyNoLongerLive("invalid API key") from None
        if sqlstate in SUBJECT_CHANGED_SQLSTATES:
            raise SubjectChanged("the subject changed meanwhile; try again") from None
        raise


def _log_broken_connection(exc: asyncpg.InternalClientError) -> None:
    # structlog is imported here, not with this module: `datavault` imports this module
    # before vault/observability/structlog_first.py imports structlog without rich.
    import structlog

    structlog.get_logger("datavault.db").warning("database_connection_broken", error=str(exc)[:200])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(f"SET ROLE {APP_ROLE}")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Returning a connection to the pool costs no round trip.

    asyncpg's default reset sends `RESET ALL; UNLISTEN *; CLOSE ALL; unlock advisory
    locks` on every release, one round trip per transaction. Pooled sessions hold none of
    that: role and tenant are set with `set_config(…, true)` and end with the transaction
    (asyncpg rolls back a transaction left open before calling this), nothing LISTENs,
    the one session advisory lock (`advisory_lock`) is released before its connection
    goes back, and cursors live only inside transactions. The session role set by
    `_init_connection` is what should stay.
    """


class Database:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 20) -> Database:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
                command_timeout=30,
                server_settings={"application_name": "datavault"},
            )
        except _UNUSABLE as exc:
            raise Unavailable("database unreachable") from exc
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self, wait: float | None = None) -> AsyncIterator[Connection]:
        """A pooled connection, the only way this class takes one. One that asyncpg finds
        in a state it cannot go on from (InternalClientError, above) is closed rather
        than returned: the pool would hand it to the next request, which would fail the
        same way (its release does not reset it)."""
        async with self._pool.acquire(timeout=wait) as conn:
            try:
                yield conn
            except asyncpg.InternalClientError:
                conn.terminate()
                raise

    @asynccontextmanager
    async def tenant_tx(
        self, tenant_id: uuid.UUID, *, set_by_first_statement: bool = False
    ) -> AsyncIterator[Connection]:
        """A transaction that sees only `tenant_id`'s rows (row-level security).

        `set_by_first_statement`: the caller's first statement is a request function
        (migration 0011, `dv_*` with the tenant as its first argument) that sets role and
        tenant itself, which saves the round trip that sets them here. A first statement
        that does not would see no tenant's rows and could write none: it fails closed.
        """
        with _database_errors():
            async with self._connection() as conn, conn.transaction():
                if not set_by_first_statement:
                    await conn.execute(_SET_TENANT, str(tenant_id))
                yield conn

    @asynccontextmanager
    async def untenanted_tx(self) -> AsyncIterator[Connection]:
        """A transaction with no tenant set: sees no tenant rows, only SECURITY DEFINER
        functions (key lookup, tenant directory) and deployment-wide tables."""
        with _database_errors():
            async with self._connection() as conn, conn.transaction():
                await conn.execute(_SET_TENANT, "")
                yield conn

    @asynccontextmanager
    async def auditor_tx(self) -> AsyncIterator[Connection]:
        """A read-only, repeatable-read transaction as datavault_auditor (migration
        0016), which reads every tenant's deletion state and can change nothing: for
        `datavault check deletion`, whose findings must not depend on the tenant
        isolation a bug could break. The login role must be a member of it (migrate
        grants it)."""
        with _database_errors():
            async with (
                self._connection() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                await conn.execute(_SET_AUDITOR)
                yield conn

    @asynccontextmanager
    async def advisory_lock(self, key: int, *, wait: bool = False) -> AsyncIterator[bool]:
        """A session-level advisory lock held on one pooled connection for the block:
        yields False at once when another session holds it (the caller skips its turn),
        or, with `wait`, waits for it. For work that spans several transactions and must
        run in one process at a time."""
        with _database_errors():
            async with self._connection() as conn:
                if wait:
                    await conn.execute("SELECT pg_advisory_lock($1)", key)
                    held = True
                else:
                    held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
                try:
                    yield held
                finally:
                    if held:
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def tenant_fetch(
        self, tenant_id: uuid.UUID, query: str, *args: object
    ) -> list[asyncpg.Record]:
        """One call of a request function (migration 0011) in its own implicit
        transaction, with `tenant_id` as its first argument: the function sets role and
        tenant for that transaction itself, so this is one round trip where `tenant_tx`
        takes four or more. For the hot single-statement reads and writes."""
        with _database_errors():
            async with self._connection() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(query, tenant_id, *args)
                return rows

    async def tenant_fetchrow(
        self, tenant_id: uuid.UUID, query: str, *args: object
    ) -> asyncpg.Record | None:
        """`tenant_fetch` for a function that returns at most one row."""
        rows = await self.tenant_fetch(tenant_id, query, *args)
        return rows[0] if rows else None

    async def untenanted_fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        """One read-only statement with no tenant set, in its own implicit transaction:
        one round trip where `untenanted_tx` takes four (BEGIN, set, query, COMMIT).
        For the hot per-request lookups (the API-key lookup). Outside a transaction the
        session is what `untenanted_tx` sets: role datavault_app (set for the session by
        `_init_connection`; transaction-local changes end with their transaction) and an
        empty tenant, so row-level security sees no tenant rows."""
        with _database_errors():
            async with self._connection() as conn:
                row: asyncpg.Record | None = await conn.fetchrow(query, *args)
                return row

    async def ping(self) -> bool:
        try:
            async with self._connection(wait=2) as conn:
                result: Any = await conn.fetchval("SELECT 1")
                return bool(result == 1)
        except _UNUSABLE:
            return False
