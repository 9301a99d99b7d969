"""A metric's time series: one value per bucket, from rollups merged with the raw tail.

Buckets are aligned as time_bucket aligns them: to the hour, to UTC midnight, weeks from
Monday 00:00 UTC, months from the first of the month 00:00 UTC; wider multiples of an hour or a
day count from 2000-01-03 00:00 UTC. The interval chooses the resolution: a whole number of days
(or weeks, or a month) is built from the daily rollups, a whole number of hours from the hourly
ones, any other whole number of minutes from the minute tier (raw events past its horizon).
Buckets with no events have the value null (count: 0).
"""

from __future__ import annotations

from typing import Any

import asyncpg

import sql
from core.params import Interval, Window, bad
from query.plan import DAY, HOUR, MINUTE, Marks, covered_by_minutes, plan
from query.statistics import (
    Owners,
    Selection,
    metric_and_marks,
    owners,
    raw_series,
)

MAX_POINTS = 10_000
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


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
    found, found_marks = await metric_and_marks(conn, name)
    if agg == "rate" and found["metric_type"] != "counter":
        raise bad("agg", f"rate applies to counters; {name!r} is a {found['metric_type']}")
    check_points(window, width)
    read = await owners(conn, found["id"], selection)
    rows, resolution, answered = await series_rows(
        conn, found["id"], found_marks, read, selection, window, width, agg, max_raw_rows
    )
    by_group: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        point = row["percentile"] if agg in PERCENTILES else value(agg, row)
        by_group.setdefault(row["grp"], []).append({"time": row["bucket"], "value": point})
    return answer(found["name"], selection, width, agg, resolution, answered, by_group)


def check_points(window: Window, width: Interval) -> None:
    """400 for a window of more than MAX_POINTS buckets of `width`."""
    if (window.end - window.start) / width.approx > MAX_POINTS:
        raise bad(
            "interval", f"more than {MAX_POINTS} buckets: widen the interval or narrow the window"
        )


def answer(
    name: str,
    selection: Selection,
    width: Interval,
    agg: str,
    resolution: str,
    answered: Window,
    by_group: dict[str | None, list[dict[str, Any]]],
    **extra: Any,
) -> dict[str, Any]:
    """A time-series answer: the points of the whole selection, or of each group_by value."""
    found: dict[str, Any] = {
        "metric_name": name,
        **extra,
        "interval": width.text,
        "agg": agg,
        "resolution": resolution,
        "start": answered.start,
        "end": answered.end,
    }
    if selection.group_by is None:
        found["points"] = by_group.get(None, [])
    else:
        found["group_by"] = selection.group_by
        found["series"] = [{"value": g, "points": p} for g, p in by_group.items()]
    return found


async def series_rows(
    conn: asyncpg.Connection,
    metric_id: int,
    marks: Marks,
    read: Owners,
    selection: Selection,
    window: Window,
    width: Interval,
    agg: str,
    max_raw_rows: int | None,
) -> tuple[list[asyncpg.Record], str, Window]:
    """The rows of `read`'s time series (a row per group and bucket, empty buckets too), the
    resolution they were read at, and the window they answer."""
    coarsest = {"1d": DAY, "1h": HOUR, "1m": MINUTE}[width.resolution]
    resolution = width.resolution
    if coarsest == MINUTE and not covered_by_minutes(window.start, window.end, marks, read.kind):
        resolution = "raw"  # older than the minute tier keeps: raw events, as many as allowed
    if resolution == "raw":
        ids, groups = await raw_series(
            conn, metric_id, selection, read, window, max_raw_rows, marks
        )
        rows = await conn.fetch(
            sql.query("timeseries_raw"),
            ids,
            groups,
            window.start,
            window.end,
            width.text,
            PERCENTILES.get(agg),
        )
        return list(rows), resolution, window
    parts = plan(window.start, window.end, marks, read.kind, coarsest)
    # A percentile comes with the figures of its bucket, clamped to their min and max.
    if width.approx == MINUTE and len(read.ids) == 1:  # a minute row per bucket
        rows = await conn.fetch(
            sql.tier_query("timeseries_minutes", read.kind),
            read.ids[0],
            parts.start,
            parts.end,
            PERCENTILES.get(agg),
            read.groups[0],
        )
    else:
        rows = await conn.fetch(
            sql.tier_query("timeseries_tiers", read.kind),
            *parts.arguments(read.ids, read.groups),
            width.text,
            PERCENTILES.get(agg),
        )
    return list(rows), resolution, Window(parts.start, parts.end)
