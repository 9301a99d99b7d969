"""A metric's time series: one value per bucket, from rollups merged with the raw tail.

Buckets are aligned as time_bucket aligns them: to the hour, to UTC midnight, weeks from
Monday 00:00 UTC, months from the first of the month 00:00 UTC; wider multiples of an hour or a
day count from 2000-01-03 00:00 UTC. The interval chooses the resolution: a whole number of days
(or weeks, or a month) is built from the daily rollups, a whole number of hours from the hourly
ones, anything finer from raw events. Buckets with no events have the value null (count: 0).
"""

from __future__ import annotations

from typing import Any

import asyncpg

import sql
from query.params import Interval, Window, bad
from query.plan import Plan, plan
from query.statistics import Selection, check_raw_rows, metric, series

MAX_POINTS = 10_000
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def parts_for(window: Window, resolution: str, stale: list[Any]) -> Plan:
    if resolution == "raw":
        return Plan(window.start, window.end, window.end, window.end, [], [])
    parts = plan(window.start, window.end, stale)
    if resolution == "1h":
        return Plan(parts.start, parts.end, parts.first_hour, parts.last_hour, parts.stale, [])
    return parts


def value(agg: str, row: asyncpg.Record) -> float | int | None:
    if agg == "count":
        return int(row["count"])
    if row["count"] == 0:
        return None
    if agg == "avg":
        return float(row["sum"]) / int(row["count"])
    return row[agg]  # type: ignore[no-any-return]


async def time_series(
    conn: asyncpg.Connection,
    name: str,
    window: Window,
    selection: Selection,
    width: Interval,
    agg: str,
    max_raw_rows: int | None = None,
) -> dict[str, Any]:
    found = await metric(conn, name)
    if agg == "rate" and found["metric_type"] != "counter":
        raise bad("agg", f"rate applies to counters; {name!r} is a {found['metric_type']}")
    if (window.end - window.start) / width.approx > MAX_POINTS:
        raise bad(
            "interval", f"more than {MAX_POINTS} buckets: widen the interval or narrow the window"
        )
    ids, groups = await series(conn, found["id"], selection)
    whole = found["id"] if selection.whole_metric else None
    if width.resolution == "raw":
        await check_raw_rows(conn, ids, window, max_raw_rows, whole)
    stale = [
        r["bucket"] for r in await conn.fetch(sql.query("stale_hours"), window.start, window.end)
    ]
    parts = parts_for(window, width.resolution, stale)
    # A percentile comes with the figures of its bucket, clamped to their min and max.
    rows = await conn.fetch(
        sql.query("timeseries_merged"),
        *parts.arguments(ids, groups, whole),
        width.text,
        PERCENTILES.get(agg),
    )

    by_group: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        point = row["percentile"] if agg in PERCENTILES else value(agg, row)
        by_group.setdefault(row["grp"], []).append({"time": row["bucket"], "value": point})
    answer: dict[str, Any] = {
        "metric_name": found["name"],
        "interval": width.text,
        "agg": agg,
        "resolution": width.resolution,
        "start": window.start,
        "end": window.end,
    }
    if selection.group_by is None:
        answer["points"] = by_group.get(None, [])
    else:
        answer["group_by"] = selection.group_by
        answer["series"] = [{"value": g, "points": p} for g, p in by_group.items()]
    return answer
