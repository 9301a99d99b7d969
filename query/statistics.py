"""Statistics of a metric over a time window."""

from __future__ import annotations

from typing import Any

import asyncpg

import sql
from query.params import Window
from service.errors import NotFound


async def metric(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await conn.fetchrow(sql.query("metric_by_name"), name)
    if row is None:
        raise NotFound(f"No metric named {name!r} has been recorded.")
    return row


async def statistics(conn: asyncpg.Connection, name: str, window: Window) -> dict[str, Any]:
    found = await metric(conn, name)
    row = await conn.fetchrow(sql.query("statistics_raw"), found["id"], window.start, window.end)
    p50, p95, p99 = row["percentiles"] or (None, None, None)
    return {
        "metric_name": found["name"],
        "count": row["count"],
        "avg": row["avg"],
        "min": row["min"],
        "max": row["max"],
        "sum": row["sum"],
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "start": window.start,
        "end": window.end,
    }
