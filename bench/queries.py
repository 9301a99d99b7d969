"""Query benchmark: statistics and time series from our API against raw SQL scans, one run.

Loads EVENTS events over 30 days into one metric with hundreds of series (binary COPY, streamed
from a generator, around the ingest path), builds the rollup tiers from them with
`python -m jobs refresh --start --end` (a rebuild from raw), then times each query repeatedly
through the HTTP API and the equivalent raw SQL over analytics.metric_events, and measures the
percentile errors against percentile_disc on raw.

range_refresh (`--only refresh`): events sent through the API over 30 days (a backfill), with no
compactor running; then 30-day statistics with all of their deltas pending, after a compactor
round, after a rebuild of the range (`python -m jobs refresh --start --end`), and as a raw
percentile_cont scan.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2

from bench import HEADERS, copy_events, new_metric
from bench.ingest import http_batches
from jobs.compact import compact, rebuild

METRIC = "bench.latency"
ENDPOINTS = [
    f"/api/v1/{name}"
    for name in (
        "agents",
        "contracts",
        "users",
        "payments",
        "search",
        "auth",
        "billing",
        "reports",
        "orders",
        "events",
    )
]
REGIONS = ["eu-west", "us-east", "ap-south", "sa-east"]
HOSTS = 5  # 10 endpoints x 4 regions x 5 hosts = 200 series
DAYS = 30


def _rows(
    series_ids: list[int], count: int, end: datetime
) -> Iterator[tuple[datetime, int, float]]:
    rng = random.Random(42)
    start = end - timedelta(days=DAYS)
    step = (end - start) / count
    # Per-series character: some endpoints are slow, some hosts noisy.
    scale = {sid: math.log(20 + 10 * (i % 10)) for i, sid in enumerate(series_ids)}
    for i in range(count):
        sid = series_ids[rng.randrange(len(series_ids))]
        yield start + step * i, sid, rng.lognormvariate(scale[sid], 0.8)


async def load(url: str, count: int, end: datetime) -> tuple[int, float]:
    """Create the metric and its series, then COPY `count` events; returns (series, seconds)."""
    conn = await asyncpg.connect(url)
    try:
        tags = [
            f'{{"endpoint": "{e}", "region": "{r}", "host": "h{h}"}}'
            for e in ENDPOINTS
            for r in REGIONS
            for h in range(HOSTS)
        ]
        ids = await new_metric(conn, METRIC, tags)
        started = time.perf_counter()
        await copy_events(conn, _rows(ids, count, end))
        elapsed = time.perf_counter() - started
        await conn.execute("ANALYZE analytics.metric_event_store")
        return len(ids), elapsed
    finally:
        await conn.close()


RAW_STATISTICS = """
    SELECT count(*), avg(value), min(value), max(value), sum(value),
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value)
    FROM analytics.metric_events
    WHERE series_id = ANY (ARRAY(SELECT s.id FROM analytics.series s
                                 JOIN analytics.metrics m ON m.id = s.metric_id
                                 WHERE m.name = $3))
      AND time >= $1 AND time < $2
"""
RAW_TIME_SERIES = """
    SELECT time_bucket('1 hour', time) AS bucket, avg(value)
    FROM analytics.metric_events
    WHERE series_id = ANY (ARRAY(SELECT s.id FROM analytics.series s
                                 JOIN analytics.metrics m ON m.id = s.metric_id
                                 WHERE m.name = $3))
      AND time >= $1 AND time < $2
    GROUP BY 1 ORDER BY 1
"""
EXACT_PERCENTILES = """
    SELECT percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value)
    FROM analytics.metric_events WHERE time >= $1 AND time < $2
"""


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)] * 1000,
    }


async def _time_api(
    base: str, path: str, params: dict[str, str], repeat: int
) -> tuple[dict[str, float], Any]:
    latencies = []
    body: Any = None
    async with httpx2.AsyncClient(base_url=base, timeout=120, headers=HEADERS) as client:
        for _ in range(repeat):
            started = time.perf_counter()
            response = await client.get(path, params=params)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            body = response.json()
    return _summary(latencies), body


async def _time_sql(url: str, query: str, args: tuple[Any, ...], repeat: int) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    try:
        latencies = []
        for _ in range(repeat):
            started = time.perf_counter()
            await conn.fetch(query, *args)
            latencies.append(time.perf_counter() - started)
        return _summary(latencies)
    finally:
        await conn.close()


async def measure(url: str, base: str, end: datetime, repeat: int, raw_repeat: int) -> dict:
    results: dict[str, Any] = {}
    cases = [
        ("statistics_24h", "statistics", {}, RAW_STATISTICS, timedelta(hours=24)),
        ("statistics_30d", "statistics", {}, RAW_STATISTICS, timedelta(days=DAYS)),
        (
            "time_series_30d_1h",
            "time-series",
            {"interval": "1h"},
            RAW_TIME_SERIES,
            timedelta(days=DAYS),
        ),
    ]
    for name, path, extra, raw_query, span in cases:
        params = {"start": (end - span).isoformat(), "end": end.isoformat(), **extra}
        api, body = await _time_api(
            base, f"/api/v1/analytics/metrics/{METRIC}/{path}", params, repeat
        )
        raw = await _time_sql(url, raw_query, (end - span, end, METRIC), raw_repeat)
        results[name] = {"api": api, "raw_sql": raw, "speedup_p50": raw["p50_ms"] / api["p50_ms"]}
        print(
            f"    {name:<20} API p50 {api['p50_ms']:8.1f} ms  p95 {api['p95_ms']:8.1f} ms"
            f"   raw SQL p50 {raw['p50_ms']:9.1f} ms   {raw['p50_ms'] / api['p50_ms']:7.1f}x",
            flush=True,
        )
        if name.startswith("statistics"):
            conn = await asyncpg.connect(url)
            try:
                exact = await conn.fetchval(EXACT_PERCENTILES, end - span, end)
            finally:
                await conn.close()
            errors = {
                p: abs(body[p] - e) / abs(e)
                for p, e in zip(("p50", "p95", "p99"), exact, strict=True)
            }
            results[name]["relative_errors"] = errors
            print(
                "    "
                + " " * 20
                + "  relative errors "
                + ", ".join(f"{p} {err * 100:.3f}%" for p, err in errors.items()),
                flush=True,
            )
    return results


def run(url: str, base: str, events: int, repeat: int = 30, raw_repeat: int = 3) -> dict:
    end = datetime.now(UTC).replace(microsecond=0)
    print(f"loading {events:,} events over {DAYS} days (binary COPY) ...", flush=True)
    series, load_s = asyncio.run(load(url, events, end))
    print(f"    {series} series, {events / load_s:,.0f} events/s", flush=True)
    print("building the tiers (python -m jobs refresh --start ... --end ...) ...", flush=True)
    started = time.perf_counter()
    rebuild(url, end - timedelta(days=DAYS, hours=1), end)
    refresh_s = time.perf_counter() - started
    print(f"    {refresh_s:.1f} s ({events / refresh_s:,.0f} events/s)", flush=True)
    print(f"querying ({repeat} API calls, {raw_repeat} raw scans each) ...", flush=True)
    figures = asyncio.run(measure(url, base, end, repeat, raw_repeat))
    return {
        "events": events,
        "series": series,
        "load_events_per_s": events / load_s,
        "rollup_build_s": refresh_s,
        **figures,
    }


def _ingested(count: int, end: datetime) -> list[dict[str, Any]]:
    """`count` events over the DAYS before `end`, as clients send them."""
    rng = random.Random(43)
    tags = [
        {"endpoint": e, "region": r, "host": f"h{h}"}
        for e in ENDPOINTS
        for r in REGIONS
        for h in range(HOSTS)
    ]
    span = DAYS * 86_400
    return [
        {
            "metric_name": METRIC,
            "value": round(rng.lognormvariate(3.5, 0.8), 3),
            "metric_type": "timer",
            "tags": tags[rng.randrange(len(tags))],
            "timestamp": (end - timedelta(seconds=rng.uniform(0, span))).isoformat(),
        }
        for _ in range(count)
    ]


async def _pending(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT (SELECT count(*) FROM _analytics.series_deltas)"
                " + (SELECT count(*) FROM _analytics.metric_deltas)"
            )
        )
    finally:
        await conn.close()


def range_refresh(url: str, base: str, events: int, repeat: int = 20, raw_repeat: int = 3) -> dict:
    """30-day statistics over events loaded through the API (no compactor running): with every
    delta pending, after a compactor round, after `python -m jobs refresh --start --end`, and as
    a raw scan."""
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=DAYS)
    print(f"sending {events:,} events over {DAYS} days (POST /metrics/batch) ...", flush=True)
    rate = asyncio.run(http_batches(base, _ingested(events, end), 5_000, 2))
    pending = asyncio.run(_pending(url))
    print(f"    {rate:,.0f} events/s; {pending:,} delta rows pending", flush=True)
    params = {"start": start.isoformat(), "end": end.isoformat()}
    path = f"/api/v1/analytics/metrics/{METRIC}/statistics"
    with_pending, _ = asyncio.run(_time_api(base, path, params, repeat))
    print("compactor round (python -m jobs refresh) ...", flush=True)
    started = time.perf_counter()
    compact(url)
    compact_s = time.perf_counter() - started
    after_compaction, _ = asyncio.run(_time_api(base, path, params, repeat))
    print("range rebuild (python -m jobs refresh --start ... --end ...) ...", flush=True)
    started = time.perf_counter()
    rebuild(url, start - timedelta(hours=1), end)
    rebuild_s = time.perf_counter() - started
    print(f"    compaction {compact_s:.1f} s, rebuild {rebuild_s:.1f} s", flush=True)
    after_rebuild, _ = asyncio.run(_time_api(base, path, params, repeat))
    raw = asyncio.run(_time_sql(url, RAW_STATISTICS, (start, end, METRIC), raw_repeat))
    for label, figures in (
        ("deltas pending", with_pending),
        ("after compaction", after_compaction),
        ("after rebuild", after_rebuild),
        ("raw percentile_cont", raw),
    ):
        print(
            f"    statistics_30d {label:<20} p50 {figures['p50_ms']:8.1f} ms"
            f"  p95 {figures['p95_ms']:8.1f} ms",
            flush=True,
        )
    return {
        "events": events,
        "ingest_events_per_s": rate,
        "deltas_pending": pending,
        "compaction_s": compact_s,
        "rebuild_s": rebuild_s,
        "statistics_30d_deltas_pending": with_pending,
        "statistics_30d_after_compaction": after_compaction,
        "statistics_30d_after_rebuild": after_rebuild,
        "statistics_30d_raw_sql": raw,
        "rebuild_to_compaction_p50": after_rebuild["p50_ms"] / after_compaction["p50_ms"],
    }
