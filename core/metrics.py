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
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

import sql
from core.db import connection

log = logging.getLogger("astraeus.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SCRAPE_DB_TIMEOUT_S = 2.0
SCRAPE_DB_EVERY_S = 5.0
BATCH_BUCKETS = (1, 10, 100, 500, 1000, 5000, 10_000, 50_000)


class Metrics:
    def __init__(self) -> None:
        self.db_read_at = -1e9
        self.stored_by_kind: dict[str, tuple[Any, Any, Any]] = {}
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
        self.skipped = Counter(
            "astraeus_ingest_skipped_values",
            "Values of accepted requests that are not stored, by protocol and reason (the string"
            " fields of line protocol: no number to keep; remote write's stale markers: the end"
            " of a series, not a value).",
            ["protocol", "reason"],
            registry=r,
        )
        self.statsd_lines = Counter(
            "astraeus_statsd_lines",
            "StatsD lines received, by outcome (accepted, or malformed_<why>: syntax, type, "
            "name, value, sample_rate, timestamp, encoding, unsupported (DogStatsD events and "
            "service checks); dropped_too_many_series: past 100,000 series of counters, gauges "
            "and sets in one interval).",
            ["outcome"],
            registry=r,
        )
        self.statsd_events = Counter(
            "astraeus_statsd_events",
            "Events of StatsD flushes, by outcome (stored, refused by validation, not_finite "
            "aggregates, or the error that kept them out: ingest_queue_full, "
            "database_unavailable, commit_timeout (may be stored), ...; error: a failed flush).",
            ["outcome"],
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
            "Body bytes of ingest requests (metric and platform events) admitted and not yet "
            "answered (being read, decoded, queued or committed); bounded by "
            "INGEST_QUEUE_MAX_BYTES.",
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
            "Age of the oldest change not yet processed: rollups (metric deltas the compactor "
            "has not taken, about a second) or track (platform events; hours wait TRACK_GRACE "
            "after they close by design).",
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
    children = metrics.stored_by_kind.get(kind)
    if children is None:  # labels() takes a lock and builds a key: once per kind
        children = metrics.stored_by_kind[kind] = (
            metrics.events.labels(kind),
            metrics.bytes.labels(kind),
            metrics.batch_events.labels(kind),
        )
    counted, sized, batched = children
    counted.inc(events)
    sized.inc(body_bytes)
    batched.observe(events)


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
