"""Cardinality (`--only cardinality`): query costs at 100,000 series of one metric.

SERIES series (a `pod` tag each), 20 events each spread over 30 days, loaded by binary COPY
and built into the tiers by a rebuild; then, through the API, the medians of 20 calls each:
30-day and 24-hour statistics of the whole metric, the 30-day daily time series, the tag
listing (its first page) and one series' 30-day statistics.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2

from bench import HEADERS, copy_events, new_metric
from jobs.compact import rebuild

METRIC = "cardinality.latency"
EVENTS_PER_SERIES = 20
DAYS = 30
REPEAT = 20


async def load(url: str, series: int, end: datetime) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        ids = await new_metric(conn, METRIC, [f'{{"pod": "p{n}"}}' for n in range(1, series + 1)])
        rng = random.Random(3)
        span = DAYS * 86_400

        def rows() -> Iterator[tuple[datetime, int, float]]:
            for series_id in ids:
                for _ in range(EVENTS_PER_SERIES):
                    yield (
                        end - timedelta(seconds=rng.uniform(0, span)),
                        series_id,
                        round(rng.lognormvariate(3.5, 0.8), 3),
                    )

        await copy_events(conn, rows())
        return ids
    finally:
        await conn.close()


def _median_ms(call: Callable[[], httpx2.Response]) -> tuple[float, Any]:
    latencies = []
    answer: Any = None
    for _ in range(REPEAT):
        started = time.perf_counter()
        response = call()
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{response.request.url} answered {response.status_code}")
        answer = response.json()
    return statistics.median(latencies) * 1e3, answer


def run(url: str, server_for: Callable[[str], Any], series: int) -> dict[str, Any]:
    end = datetime.now(UTC)
    print(f"    {series:,} series x {EVENTS_PER_SERIES} events over {DAYS} days ...", flush=True)
    started = time.perf_counter()
    asyncio.run(load(url, series, end))
    rebuild(url, end - timedelta(days=DAYS + 1), end + timedelta(hours=1))
    print(f"        loaded and rebuilt in {time.perf_counter() - started:.0f} s", flush=True)
    path = f"/api/v1/analytics/metrics/{METRIC}"
    queries = {
        "statistics_30d_metric": (f"{path}/statistics", {"hours": str(DAYS * 24)}),
        "statistics_24h_metric": (f"{path}/statistics", {"hours": "24"}),
        "timeseries_30d_1d_metric": (
            f"{path}/time-series",
            {"hours": str(DAYS * 24), "interval": "1d", "agg": "p95"},
        ),
        "tags_first_page": (f"{path}/tags", {}),
        "statistics_30d_one_series": (
            f"{path}/statistics",
            {"hours": str(DAYS * 24), "tag.pod": f"p{series // 2}"},
        ),
    }
    figures: dict[str, Any] = {"series": series, "events": series * EVENTS_PER_SERIES}
    with server_for(url) as base:
        client = httpx2.Client(base_url=base, headers=HEADERS, timeout=120)
        try:
            for name, (query_path, params) in queries.items():
                median, answer = _median_ms(lambda p=query_path, q=params: client.get(p, params=q))
                figures[name] = median
                detail = ""
                if "count" in answer:
                    detail = f" ({answer['count']:,} events)"
                elif "tags" in answer:
                    detail = f" ({len(answer['tags'][0]['values']):,} values on the page)"
                print(f"        {name:<28} p50 {median:8.1f} ms{detail}", flush=True)
        finally:
            client.close()
    return figures
