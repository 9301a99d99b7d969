"""The service's own metrics, in Prometheus exposition format at GET /metrics (no key needed).

One registry per app (tests build many apps in one process). Counters and histograms are
updated on the request path; gauges of the pool and the ingest queue are read at scrape time,
and so are the figures kept in the database (rollup and tracking lag, job runs), so they are
right whichever process ran the jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import sql
from service.db import connection
from service.logs import SANE_ID, request_id

access = logging.getLogger("astraeus.access")
log = logging.getLogger("astraeus.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SCRAPE_DB_TIMEOUT_S = 2.0
SCRAPE_DB_EVERY_S = 5.0
BATCH_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10_000, 50_000)


class Metrics:
    def __init__(self) -> None:
        self.db_read_at = -1e9
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "astraeus_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "astraeus_http_request_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            "astraeus_refused_requests",
            "Requests answered with an error, by its code (validation_failed, ingest_queue_full,"
            " unauthorized, ...).",
            ["reason"],
            registry=r,
        )
        self.events = Counter(
            "astraeus_ingest_events",
            "Events stored, by kind (metric or platform).",
            ["kind"],
            registry=r,
        )
        self.bytes = Counter(
            "astraeus_ingest_bytes",
            "Request body bytes of stored batches, decompressed.",
            ["kind"],
            registry=r,
        )
        self.batch_events = Histogram(
            "astraeus_ingest_batch_events",
            "Events per stored batch, by kind.",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "astraeus_ingest_commit_seconds",
            "Time of one group commit of metric events (binary COPY and bookkeeping).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_events = Gauge(
            "astraeus_ingest_queue_events", "Metric events queued for a group commit.", registry=r
        )
        self.queue_bytes = Gauge(
            "astraeus_ingest_queue_bytes",
            "Body bytes of metric ingest requests admitted and not yet answered (being read, "
            "decoded, queued or committed); bounded by INGEST_QUEUE_MAX_BYTES.",
            registry=r,
        )
        self.pool = Gauge(
            "astraeus_db_pool_connections",
            "Database pool connections: size, in_use, max.",
            ["state"],
            registry=r,
        )
        self.lag = Gauge(
            "astraeus_refresh_lag_seconds",
            "Age of the oldest change not yet processed: rollups (metric events) or track "
            "(platform events). Hours wait 15 minutes after they close by design.",
            ["job"],
            registry=r,
        )
        self.job_seconds = Gauge(
            "astraeus_job_last_duration_seconds",
            "Duration of the last finished run of each periodic job.",
            ["job"],
            registry=r,
        )
        self.job_failures = Gauge(
            "astraeus_job_failures_24h",
            "Failed or interrupted runs of each periodic job in the last 24 hours.",
            ["job"],
            registry=r,
        )
        self.db_ok = Gauge(
            "astraeus_self_metrics_db_ok",
            "1 when this scrape read the database-kept figures, 0 when it could not (they keep "
            "their last values).",
            registry=r,
        )
        self.notification_failures = Gauge(
            "astraeus_notification_failures_24h",
            "Failed notification delivery attempts in the last 24 hours.",
            registry=r,
        )


def stored(metrics: Metrics, kind: str, events: int, body_bytes: int) -> None:
    metrics.events.labels(kind).inc(events)
    metrics.bytes.labels(kind).inc(body_bytes)
    metrics.batch_events.labels(kind).observe(events)


class RequestMetrics:
    """ASGI middleware: gives every HTTP request its id (X-Request-ID, service/logs.py), counts
    and times it by its route template, and logs it (logger astraeus.access, at info)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # labels() takes a lock and builds a key on every call: keep the children instead.
        self.counted: dict[tuple[str, str, int], Any] = {}
        self.timed: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode(
            "latin-1"
        )
        rid = given if SANE_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started_response = False

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started_response:
                raise
            # A bug: answered here, with the request id, rather than by the server's catch-all.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            self.metrics.refused.labels("internal_error").inc()
            body = {
                "error": "internal_error",
                "message": "The server failed to handle the request.",
                "details": [],
            }
            await JSONResponse(body, 500)(scope, receive, sending)
        finally:
            request_id.reset(token)
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            key = (method, template, status)
            counter = self.counted.get(key)
            if counter is None:
                counter = self.counted[key] = self.metrics.requests.labels(
                    method, template, str(status)
                )
            counter.inc()
            timer = self.timed.get(template)
            if timer is None:
                timer = self.timed[template] = self.metrics.latency.labels(template)
            timer.observe(elapsed)
            if access.isEnabledFor(logging.INFO):
                access.info(
                    "%s %s %d %.1f ms",
                    method,
                    scope["path"].encode("unicode_escape").decode("ascii"),  # one line, always
                    status,
                    elapsed * 1e3,
                    extra={
                        "request_id": rid,
                        "method": method,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1e3, 3),
                    },
                )


async def _from_database(metrics: Metrics, pool: Any) -> None:
    async with connection(pool) as conn:
        lag = await conn.fetchrow(sql.query("self_metrics_lag"))
        jobs = await conn.fetch(sql.query("self_metrics_jobs"))
        failed = await conn.fetchval(sql.query("self_metrics_notifications"))
    for job in ("rollups", "track"):
        metrics.lag.labels(job).set(float(lag[job] or 0))
    metrics.job_seconds.clear()
    metrics.job_failures.clear()
    for row in jobs:
        if row["last_duration_s"] is not None:
            metrics.job_seconds.labels(row["job"]).set(float(row["last_duration_s"]))
        metrics.job_failures.labels(row["job"]).set(row["failures"])
    metrics.notification_failures.set(failed)


async def exposition(request: Request) -> Response:
    """GET /metrics."""
    state = request.app.state
    metrics: Metrics = state.metrics
    pool = getattr(state, "pool", None)
    if pool is not None:
        metrics.pool.labels("size").set(pool.get_size())
        metrics.pool.labels("in_use").set(pool.get_size() - pool.get_idle_size())
        metrics.pool.labels("max").set(pool.get_max_size())
        committer = getattr(state, "committer", None)
        if committer is not None:
            metrics.queue_events.set(committer.queued_events)
            metrics.queue_bytes.set(committer.queued_bytes)
        # At most one database read per SCRAPE_DB_EVERY_S, however often /metrics is called.
        if time.monotonic() - metrics.db_read_at >= SCRAPE_DB_EVERY_S:
            metrics.db_read_at = time.monotonic()
            try:
                await asyncio.wait_for(_from_database(metrics, pool), SCRAPE_DB_TIMEOUT_S)
                metrics.db_ok.set(1)
            except Exception as exc:  # keep the last figures; in-process ones still go out
                log.warning("/metrics could not read the database: %s", exc)
                metrics.db_ok.set(0)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", exposition, methods=["GET"])]
