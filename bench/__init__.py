"""`make bench`. HEADERS: what every benchmark request sends (the API key of the run); and the
loaders' two steps around the API (a metric with its series, then raw events by binary COPY)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg

from ingest import decimals

HEADERS: dict[str, str] = {}


async def new_metric(conn: asyncpg.Connection, name: str, tags: list[str]) -> list[int]:
    """A timer metric (ms) with one series per tag set (JSON text); the series ids in order."""
    metric_id = await conn.fetchval(
        "INSERT INTO analytics.metrics (name, metric_type, unit) VALUES ($1, 'timer', 'ms') "
        "RETURNING id",
        name,
    )
    rows = await conn.fetch(
        "INSERT INTO analytics.series (metric_id, tags) "
        "SELECT $1, t::jsonb FROM unnest($2::text[]) WITH ORDINALITY AS u (t, n) ORDER BY n "
        "RETURNING id",
        metric_id,
        tags,
    )
    return [row["id"] for row in rows]


async def copy_events(
    conn: asyncpg.Connection, rows: Iterable[tuple[datetime, int, float]]
) -> None:
    """(time, series id, value) rows into analytics.metric_event_store by binary COPY, stored
    as the API stores them (ingest/decimals.py)."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    if not columns:
        return
    times, series, values = columns
    await conn.copy_records_to_table(
        "metric_event_store",
        schema_name="analytics",
        columns=("time", "series_id", "value", "decimals", "digits"),  # `total` stays null
        records=zip(times, series, *decimals.columns(values), strict=True),
    )


async def copy_floats(
    conn: asyncpg.Connection, rows: Iterable[tuple[datetime, int, float]]
) -> None:
    """The same rows as float8 values, the database's cheapest way in: the raw baseline."""
    await conn.copy_records_to_table(
        "metric_event_store",
        schema_name="analytics",
        columns=("time", "series_id", "value"),
        records=rows,
    )
