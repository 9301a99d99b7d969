"""The API server's connection pool, and database errors translated once for the HTTP layer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psycopg

import sql
from service.errors import (
    ApiError,
    BadRequest,
    Conflict,
    DatabaseUnavailable,
    NotFound,
    QueryTimeout,
    field_error,
)
from service.settings import Settings


def connect_sync(url: str, application_name: str, **options: Any) -> psycopg.Connection[Any]:
    """A psycopg connection for jobs, in UTC whatever the server's default: buckets, days and
    every timestamp the jobs compute with are UTC.

    A job holds its advisory lock on a connection like this, so a dead peer must be noticed
    (TCP keepalives: about a minute, not the kernel's two hours) and no statement may hang for
    ever (an hour is far beyond any job's largest statement, a day's rollups).
    """
    return psycopg.connect(
        url,
        application_name=application_name,
        options="-c TimeZone=UTC -c statement_timeout=3600000",
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
        **options,
    )


async def create_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.require_database_url(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout_s,
        command_timeout=settings.statement_timeout_ms / 1000 + 5,
        server_settings={
            "application_name": "astraeus-api",
            "statement_timeout": str(settings.statement_timeout_ms),
            # Timestamps in and out are UTC whatever the server's default.
            "timezone": "UTC",
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


# Waiting longer than this for a pooled connection (all busy) is a 503, not a hung request.
ACQUIRE_TIMEOUT_S = 10.0


async def acquire(pool: asyncpg.Pool) -> asyncpg.Connection:
    """A connection from the pool; failing to get one is a 503, whatever the reason."""
    try:
        return await pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise DatabaseUnavailable() from exc


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for the length of a block, released after it."""
    conn = await acquire(pool)
    try:
        yield conn
    finally:
        await pool.release(conn)


async def save(
    conn: asyncpg.Connection, statement: str, *args: Any, taken: str, missing: str
) -> int:
    """Runs a named INSERT/UPDATE/DELETE ... RETURNING id: 409 `taken` on a unique name, 404
    `missing` when no row was touched."""
    try:
        found = await conn.fetchval(sql.query(statement), *args)
    except asyncpg.UniqueViolationError:
        raise Conflict(taken, details=[field_error("name", "already in use")]) from None
    if found is None:
        raise NotFound(missing)
    return int(found)


class HeldConnection:
    """A pooled connection a writer keeps from one group to the next.

    Acquiring and releasing per group would cost a reset round trip on every commit. After any
    failure the connection's state is unknown, so it goes back to the pool (which resets or
    discards it) and the next group takes a fresh one.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.conn: asyncpg.Connection | None = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self.conn is None or self.conn.is_closed():
            self.conn = None
            self.conn = await acquire(self.pool)  # 503 when none can be had
        try:
            yield self.conn
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
