"""The ASGI application: routes, error handlers and the lifespan that owns the pool."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

import sql
from auth.table import KeyTable
from core import db
from core.errors import ApiError
from core.http import JSON
from core.memory import AfterBursts, configure_malloc
from core.metrics import Metrics
from core.settings import Settings, load, redact_url
from ingest import remote_write
from ingest.budget import ByteBudget
from ingest.committer import GroupCommitter
from ingest.events import EventWriter
from ingest.series import SeriesRegistry
from ingest.statsd import Listener
from ingest.tagsets import TagSets
from jobs.compact import start_in_thread as start_compactor
from jobs.periodic import compactor, periodic_jobs
from jobs.scheduler import Scheduler, start_in_thread
from monitoring.services import load_services_file
from query.entities import LiveFigures
from service.front import Front
from service.routes import ROUTES
from sql.migrate import migrate, read_migrations

log = logging.getLogger("astraeus.api")


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    request.app.state.metrics.refused.labels(exc.code).inc()
    return JSON(exc.body(), exc.status, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = {"error": codes.get(exc.status_code, "http_error"), "message": exc.detail, "details": []}
    request.app.state.metrics.refused.labels(body["error"]).inc()
    return JSON(body, exc.status_code, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    translated = db.translate(exc)
    if translated is not None:
        return await api_error(request, translated)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return await api_error(request, ApiError())


DATABASE_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


# How long shutdown waits for the scheduler's job in flight. A rollup over a large backlog can
# run for many minutes, and a server that ignores SIGTERM that long gets killed harder by its
# supervisor. Left behind, the job dies with the process: its transaction rolls back (each job
# commits only whole steps) and its run is marked interrupted by the next scheduler to claim it.
SCHEDULER_STOP_WAIT_S = 10.0


async def stop_scheduler(scheduler: Scheduler, thread: threading.Thread) -> None:
    scheduler.stop.set()  # no further job starts
    await asyncio.to_thread(thread.join, SCHEDULER_STOP_WAIT_S)
    if thread.is_alive():
        log.warning(
            "shutting down with a scheduled job still running after %g s: it is rolled back "
            "and will be marked interrupted",
            SCHEDULER_STOP_WAIT_S,
        )


def create_app(settings: Settings | None = None, *, migrate_first: bool | None = None) -> Starlette:
    settings = settings or load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = settings.require_database_url()
        if settings.migrate_on_start if migrate_first is None else migrate_first:
            report = await asyncio.to_thread(migrate, url)
            log.info("schema up to date (%d applied now)", len(report.applied))
        app.state.settings = settings
        app.state.migrations = read_migrations()
        app.state.pool = await db.create_pool(settings)
        if settings.services_file:
            loaded = await load_services_file(app.state.pool, settings.services_file)
            log.info("%d service(s) loaded from %s", loaded, settings.services_file)
        configure_malloc()
        app.state.tagsets = TagSets(settings.ingest)
        # One bytes budget for all ingest; once a burst that filled it drains, its memory is
        # handed back to the system (core/memory.py).
        app.state.ingest_budget = ByteBudget(
            settings.ingest.queue_max_bytes, on_drained=AfterBursts()
        )
        app.state.series = SeriesRegistry(settings.ingest.max_series_per_metric)
        app.state.remote_write = remote_write.Memory()
        app.state.committer = GroupCommitter(
            app.state.pool,
            app.state.series,
            settings.ingest,
            on_commit=app.state.metrics.commit_seconds.observe,
            budget=app.state.ingest_budget,
        )
        app.state.committer.start()
        app.state.statsd = None
        if settings.statsd_addr:
            app.state.statsd = Listener(
                settings, app.state.committer, app.state.tagsets, app.state.metrics
            )
            await app.state.statsd.start()
        app.state.events = EventWriter(
            app.state.pool,
            timedelta(hours=settings.ingest.idempotency_ttl_hours),
            concurrency=max(1, settings.db_pool_max - settings.ingest.writers - 1),
            budget=app.state.ingest_budget,
        )
        app.state.live_figures = LiveFigures(
            settings.dashboard_cache_s, db.statement_bound_s(settings)
        )
        await app.state.keys.reload(app.state.pool)
        app.state.scheduler = None
        if settings.run_scheduler:
            # Jobs run in a thread of their own (they are synchronous psycopg code), claiming
            # each job through the database, so any number of replicas can do this at once.
            app.state.scheduler = Scheduler(url, periodic_jobs(settings))
            app.state.scheduler_thread = start_in_thread(app.state.scheduler)
            # The compactor keeps a loop of its own: a long job must not hold it up.
            app.state.compactor = compactor(url, settings, app.state.scheduler.stop)
            app.state.compactor_thread = start_compactor(app.state.compactor)
        async with app.state.pool.acquire() as conn:
            row = await conn.fetchrow(sql.query("timescaledb_installed"))
        app.state.timescaledb = (
            {"version": row["extversion"], "edition": row["edition"]} if row else None
        )
        log.info("serving with database %s", redact_url(url))
        if settings.auth_disabled:
            log.warning(
                "AUTH_DISABLED=true: every request is served without an API key; "
                "never run this way where anyone else can reach the port"
            )
        # Everything allocated so far (modules, the app, the pool) lives as long as the process.
        # Frozen, the collector stops walking it on every full collection: those walks were the
        # slowest 1% of ingest requests (p99 18 ms -> 6 ms in `make bench`).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if app.state.scheduler is not None:
                await stop_scheduler(app.state.scheduler, app.state.scheduler_thread)
                await asyncio.to_thread(app.state.compactor_thread.join, SCHEDULER_STOP_WAIT_S)
            if app.state.statsd is not None:
                try:
                    await app.state.statsd.stop()  # its last interval, into the committer
                except Exception:
                    log.exception("the StatsD listener did not stop cleanly")
            await app.state.committer.stop()
            await app.state.pool.close()

    metrics = Metrics()
    keys_table = KeyTable(settings.auth_cache_s)
    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[
            Middleware(Front, metrics=metrics, keys=keys_table, settings=settings, routes=ROUTES)
        ],
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            # Database failures by class: answered by Starlette's exception layer, beneath the
            # front layer (so with the request id and counted, the connection kept alive),
            # unlike the catch-all below.
            **dict.fromkeys(DATABASE_ERRORS, unexpected_error),
            Exception: unexpected_error,
        },
    )
    app.state.metrics = metrics
    app.state.keys = keys_table
    return app
