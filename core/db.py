"""The API server's connection pool, and database errors translated once for the HTTP layer.

Every block of database work ends by a deadline, whatever the database does (stopped, behind a
partition, slow): the request's budget (`Budget`, set per request by core/deadlines.py and
counted from its first database access), or a block's own. A server that does not answer does
not answer a cancel request either, so at the deadline the connection is terminated: whatever
awaits it fails at once, the pool opens a fresh one later, and the block fails with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

import asyncpg
import psycopg

import sql
from core.errors import (
    ApiError,
    BadRequest,
    Conflict,
    DatabaseTimeout,
    DatabaseUnavailable,
    NotFound,
    QueryTimeout,
    field_error,
)
from core.settings import Settings

T = TypeVar("T")
JOB_STATEMENT_TIMEOUT_MS = 3_600_000


def connect_sync(
    url: str,
    application_name: str,
    *,
    statement_timeout_ms: int = JOB_STATEMENT_TIMEOUT_MS,
    abandon: Abandon | None = None,
    **options: Any,
) -> psycopg.Connection[Any]:
    """A psycopg connection for jobs, in UTC whatever the server's default: buckets, days and
    every timestamp the jobs compute with are UTC.

    A job holds its advisory lock on a connection like this, so a dead peer must be noticed
    (TCP keepalives: about a minute, not the kernel's two hours) and no statement may hang for
    ever (an hour is far beyond any job's largest statement, a day's rollups). An API request
    passes its own bound (see `in_thread`).
    """
    conn = psycopg.connect(
        url,
        application_name=application_name,
        options=f"-c TimeZone=UTC -c statement_timeout={statement_timeout_ms}",
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
        **options,
    )
    if abandon is not None:
        abandon.watch(conn)
    return conn


class Abandon:
    """The sockets of the psycopg connections a worker thread opens for one request.

    At the request's deadline the loop shuts them down: the thread's blocked call fails at once
    (a server that does not answer answers no cancel request either) and the thread closes its
    connection itself, as after any broken connection. Each socket is held through a duplicate
    descriptor, so the number shut down is never one reused by another connection; the
    duplicates are closed when the thread's call ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._abandoned = False

    def watch(self, conn: psycopg.Connection[Any]) -> None:
        """In the thread, once connected: past the deadline already, fails at once."""
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        with self._lock:
            self._sockets.append(sock)
            abandoned = self._abandoned
        if abandoned:
            conn.close()
            raise psycopg.OperationalError("the request's time bound is over")

    def abandon(self) -> None:
        """From the loop, at the deadline."""
        with self._lock:
            self._abandoned = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """Once the thread's call has ended."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


async def in_thread(bound_s: float, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs, abandon=...)` in a worker thread, ended by the request's deadline
    (counted now if not yet, of `bound_s` seconds at most): past it, the connections `call`
    opened with that `abandon` are shut down and the request fails with DatabaseTimeout (503).
    `call` must bound its own connection attempts (connect_timeout)."""
    abandon = Abandon()
    work = asyncio.ensure_future(asyncio.to_thread(call, *args, **kwargs, abandon=abandon))

    def ended(done: asyncio.Future[T]) -> None:
        abandon.release()
        if not done.cancelled():
            done.exception()  # retrieved: a failure after the deadline is nobody's answer

    work.add_done_callback(ended)
    try:
        async with asyncio.timeout(remaining(bound_s)):
            return await asyncio.shield(work)
    except TimeoutError:
        if work.done():  # the call's own TimeoutError
            raise
        abandon.abandon()
        raise DatabaseTimeout() from None


# What a request may wait beyond STATEMENT_TIMEOUT_MS: room for the server's own cancellation
# (422 query_too_expensive) to arrive before the client gives up on the server (503).
STATEMENT_MARGIN_S = 1.0


def statement_bound_s(settings: Settings) -> float:
    return settings.statement_timeout_ms / 1000 + STATEMENT_MARGIN_S


# How often a backend busy with a statement checks that its client is still there. At a
# deadline the client closes the connection (a cancel request would wait on the server); a
# server that is slow but alive would otherwise run the statement on until it next sends rows
# or reaches STATEMENT_TIMEOUT_MS. With this, it aborts within a second of the close, at no
# cost to the client (no round trip; a pg_cancel_backend would need another connection to a
# server that may not answer). PostgreSQL 14 and later: an older server goes without.
CLIENT_CHECK = {"client_connection_check_interval": "1000"}


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(*args, **kwargs)
    except asyncpg.UndefinedObjectError:  # unrecognized parameter: PostgreSQL 13
        settings = {k: v for k, v in kwargs.pop("server_settings").items() if k not in CLIENT_CHECK}
        return await asyncpg.connect(*args, server_settings=settings, **kwargs)


class ApiConnection(asyncpg.Connection):  # type: ignore[misc]
    """The API's pooled connections: given back to the pool without a reset statement.

    asyncpg's reset (advisory locks, cursors, LISTEN, session settings) is one more round
    trip on every request, awaited before the answer leaves. Nothing on these connections
    takes a session-level lock, cursor, listener or setting (the jobs, which do, connect with
    psycopg), and a transaction left open is still rolled back on release."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.require_database_url(),
        connect=_connect,
        connection_class=ApiConnection,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout_s,
        # Each statement, outside any budget too (start-up, background work).
        command_timeout=statement_bound_s(settings),
        server_settings={
            "application_name": "astraeus-api",
            "statement_timeout": str(settings.statement_timeout_ms),
            # Timestamps in and out are UTC whatever the server's default.
            "timezone": "UTC",
            **CLIENT_CHECK,
        },
    )


# SQLSTATE classes that mean "the database is not there right now", not "your request is bad".
_UNAVAILABLE_CLASSES = ("08", "53", "57P")


def translate(exc: BaseException) -> ApiError | None:
    """The API error for a database failure, or None when it is a bug to report as a 500."""
    if isinstance(exc, asyncpg.QueryCanceledError):
        return QueryTimeout()
    # InternalClientError: a pooled connection the server has just terminated.
    if isinstance(
        exc, (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)
    ):
        return DatabaseUnavailable()
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        if state.startswith(_UNAVAILABLE_CLASSES):
            return DatabaseUnavailable()
        if state in ("22021", "22P05"):  # NUL or a character the database cannot store
            return BadRequest(
                "The request contains a character that cannot be stored (NUL, or invalid in UTF-8)."
            )
        if state.startswith("40"):  # deadlock, serialization failure: worth a retry
            return DatabaseUnavailable(
                "The database had to abort the transaction; retry.", retry_after_s=1
            )
    return None


class Budget:
    """How long the database work of one request may take, counted from its first database
    access (a slow upload before it is not the database's time). Shared by the tasks the
    request starts, which inherit it with their context."""

    __slots__ = ("deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None

    def start(self) -> float:
        """The loop time by which the work must end: set on the first call."""
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.seconds
        return self.deadline


budget: ContextVar[Budget | None] = ContextVar("astraeus_db_budget", default=None)


def deadline() -> float | None:
    """The current request's deadline (its budget starts now if it had not), None outside one."""
    current = budget.get()
    return None if current is None else current.start()


def detached(work: Coroutine[Any, Any, T], seconds: float) -> asyncio.Task[T]:
    """A task for work that several requests share (the first one's arrival starts it): it has
    a budget of its own, `seconds`, not the first request's, whose end would cut it short for
    every other request waiting. Each waiter still waits no longer than its own budget."""
    context = contextvars.copy_context()
    context.run(budget.set, Budget(seconds))
    return asyncio.get_running_loop().create_task(work, context=context)


def remaining(default: float) -> float:
    """Seconds left of the current request's budget, at most `default` (all of it outside one)."""
    end = deadline()
    if end is None:
        return default
    return max(0.0, min(default, end - asyncio.get_running_loop().time()))


# Waiting longer than this for a pooled connection (all busy) is a 503, not a hung request.
ACQUIRE_TIMEOUT_S = 10.0
# Longest a connection's reset may take when it goes back to the pool; past it, terminated.
RESET_TIMEOUT_S = 1.0
# Exceptions after which nobody knows what the connection was in the middle of: a statement
# cancelled or timed out client-side, a broken transport. Such a connection is terminated,
# never reset and reused (a reset would first wait for a cancellation the server never answers).
_UNCERTAIN = (
    TimeoutError,
    asyncio.CancelledError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def _end(within: float | None) -> float | None:
    if within is None:
        return deadline()
    return asyncio.get_running_loop().time() + within


async def acquire(pool: asyncpg.Pool, end: float | None = None) -> asyncpg.Connection:
    """A connection from the pool, by the loop time `end` at the latest; failing to get one is a
    503, whatever the reason."""
    timeout = ACQUIRE_TIMEOUT_S
    if end is not None:
        timeout = max(0.0, min(timeout, end - asyncio.get_running_loop().time()))
    try:
        return await pool.acquire(timeout=timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise DatabaseUnavailable() from exc


def _terminate(conn: asyncpg.Connection) -> None:
    # Once terminated, the pool takes the connection back and the proxy we hold is detached.
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection, end: float | None) -> None:
    timeout = RESET_TIMEOUT_S
    if end is not None:
        timeout = min(timeout, end - asyncio.get_running_loop().time())
    if timeout <= 0:
        _terminate(conn)
    # A reset that fails or takes too long terminates the connection: nothing left to do, and
    # the block's own outcome stands.
    with contextlib.suppress(Exception):
        await pool.release(conn, timeout=max(timeout, 0.0))


@contextlib.asynccontextmanager
async def _guarded(conn: asyncpg.Connection, end: float | None) -> AsyncIterator[None]:
    """Terminates `conn` at the loop time `end`; the block then fails with DatabaseTimeout."""
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        _terminate(conn)

    watchdog = None if end is None else asyncio.get_running_loop().call_at(end, expire)
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, _UNCERTAIN):
            _terminate(conn)
        if fired and isinstance(exc, Exception):
            raise DatabaseTimeout() from exc
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()


@contextlib.asynccontextmanager
async def connection(
    pool: asyncpg.Pool, within: float | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for the length of a block, released after it. The block (waiting
    for the connection included) ends within `within` seconds, else by the request's deadline;
    past it, 503."""
    end = _end(within)
    conn = await acquire(pool, end)
    try:
        async with _guarded(conn, end):
            yield conn
    finally:
        await _release(pool, conn, end)


class Resource:
    """A named resource of the CRUD endpoints (alert rules, channels, services): its writes and
    the two refusals they share, in its own words."""

    def __init__(self, *, taken: str, missing: str) -> None:
        self.taken = taken
        self.missing = missing

    async def save(self, conn: asyncpg.Connection, statement: str, *args: Any) -> int:
        """Runs a named INSERT/UPDATE/DELETE ... RETURNING id: 409 `taken` on a unique name,
        404 `missing` when no row was touched."""
        try:
            found = await conn.fetchval(sql.query(statement), *args)
        except asyncpg.UniqueViolationError:
            raise Conflict(self.taken, details=[field_error("name", "already in use")]) from None
        if found is None:
            raise NotFound(self.missing)
        return int(found)


class HeldConnection:
    """A pooled connection a writer keeps from one group to the next.

    Acquiring and releasing per group would cost a reset round trip on every commit. After any
    failure the connection's state is unknown, so it goes back to the pool (which resets or
    discards it, or it was terminated) and the next group takes a fresh one.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.conn: asyncpg.Connection | None = None

    @contextlib.asynccontextmanager
    async def connection(self, within: float) -> AsyncIterator[asyncpg.Connection]:
        """The held connection for a block that must end within `within` seconds (waiting for a
        connection included): past that, DatabaseTimeout."""
        end = asyncio.get_running_loop().time() + within
        if self.conn is None or _closed(self.conn):
            self.conn = None
            self.conn = await acquire(self.pool, end)  # 503 when none can be had
        try:
            async with _guarded(self.conn, end):
                yield self.conn
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await _release(self.pool, conn, None)


def _closed(conn: asyncpg.Connection) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # lost and taken back by the pool: the proxy is detached
        return True


def bounded(settings: Settings, bound_s: float) -> dict[str, Any]:
    """connect_sync's options for a request bounded by `bound_s` seconds: a connection attempt
    and each statement end within it (in_thread ends the request at the bound whatever the
    database does, and these end the thread's work soon after)."""
    return {
        "connect_timeout": max(2, min(settings.db_connect_timeout_s, math.ceil(bound_s))),
        "statement_timeout_ms": max(1, int(bound_s * 1000)),
    }
