"""Alert benchmark: one evaluation pass over 1,000 enabled rules on realistic data."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from bench import copy_events
from jobs.alerts import evaluate

METRICS = 100
SERIES_PER_METRIC = 10
AGGREGATIONS = ["avg", "max", "p95", "p99", "count", "sum", "min"]


async def load(url: str, rules: int, end: datetime) -> int:
    """An hour of events (one per series every 10 s) and `rules` rules over them."""
    rng = random.Random(5)
    conn = await asyncpg.connect(url)
    try:
        rows = []
        for m in range(METRICS):
            metric_id = await conn.fetchval(
                "INSERT INTO analytics.metrics (name, metric_type) VALUES ($1, 'gauge') "
                "RETURNING id",
                f"bench.m{m}",
            )
            for s in range(SERIES_PER_METRIC):
                tags = msgspec.json.encode({"host": f"h{s}", "region": f"r{s % 3}"}).decode()
                series_id = await conn.fetchval(
                    "INSERT INTO analytics.series (metric_id, tags) VALUES ($1, $2::jsonb) "
                    "RETURNING id",
                    metric_id,
                    tags,
                )
                rows.extend(
                    (end - timedelta(seconds=10 * i), series_id, rng.uniform(0, 100))
                    for i in range(360)
                )
        await copy_events(conn, rows)
        for r in range(rules):
            tags: dict[str, Any] = {} if r % 3 else {"region": [f"r{r % 3}"]}
            await conn.execute(
                "INSERT INTO analytics.alert_rules (name, metric_name, tags, aggregation, "
                "window_seconds, condition_operator, threshold, duration_seconds) "
                "VALUES ($1, $2, $3::jsonb, $4::text::analytics.alert_aggregation, $5, 'gt', $6, "
                "60)",
                f"rule {r}",
                f"bench.m{r % METRICS}",
                msgspec.json.encode(tags).decode(),
                AGGREGATIONS[r % len(AGGREGATIONS)],
                [60, 300, 900][r % 3],
                rng.uniform(40, 99),
            )
        await conn.execute("ANALYZE")
        return len(rows)
    finally:
        await conn.close()


def run(url: str, rules: int = 1000, passes: int = 5) -> dict[str, Any]:
    end = datetime.now(UTC).replace(microsecond=0)
    print(f"loading an hour of events and {rules} rules ...", flush=True)
    events = asyncio.run(load(url, rules, end))
    durations = []
    report = None
    for _ in range(passes):
        started = time.perf_counter()
        report = evaluate(url)
        durations.append(time.perf_counter() - started)
    assert report is not None
    figures = {
        "rules": rules,
        "events": events,
        "passes": passes,
        "pass_p50_ms": statistics.median(durations) * 1000,
        "pass_max_ms": max(durations) * 1000,
        "incidents_open": len(report.opened),
    }
    print(
        f"    one pass over {rules} rules: p50 {figures['pass_p50_ms']:.0f} ms, max "
        f"{figures['pass_max_ms']:.0f} ms (target < 1000 ms)",
        flush=True,
    )
    return figures
