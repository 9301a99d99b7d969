"""Statistics of a metric over a time window, from rollups merged with the raw tail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

import sql
from query.params import Window
from query.plan import plan
from service.errors import NotFound, QueryTooLarge

FIGURES = ("count", "avg", "min", "max", "sum", "p50", "p95", "p99")


@dataclass(frozen=True)
class Selection:
    """Which series of a metric a query covers, and how they are grouped."""

    filters: dict[str, list[str]]
    group_by: str | None = None

    @property
    def whole_metric(self) -> bool:
        """All of a metric's series, ungrouped: the per-metric rollups can answer."""
        return not self.filters and self.group_by is None


async def metric(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await conn.fetchrow(sql.query("metric_by_name"), name)
    if row is None:
        raise NotFound(f"No metric named {name!r} has been recorded.")
    return row


async def series(
    conn: asyncpg.Connection, metric_id: int, selection: Selection
) -> tuple[list[int], list[str | None]]:
    rows = await conn.fetch(
        sql.query("metric_series"),
        metric_id,
        msgspec.json.encode(selection.filters).decode(),
        selection.group_by,
    )
    return [row["id"] for row in rows], [row["grp"] for row in rows]


def figures(row: asyncpg.Record | None) -> dict[str, Any]:
    if row is None:
        return {"count": 0, **{name: None for name in FIGURES[1:]}}
    p50, p95, p99 = row["percentiles"] or (None, None, None)
    return {
        "count": row["count"],
        "avg": row["avg"],
        "min": row["min"],
        "max": row["max"],
        "sum": row["sum"],
        "p50": p50,
        "p95": p95,
        "p99": p99,
    }


async def merged(
    conn: asyncpg.Connection,
    ids: list[int],
    groups: list[str | None],
    window: Window,
    whole_metric: int | None,
) -> list[asyncpg.Record]:
    """Statistics per group from the rollups and the raw tail (see statistics_merged)."""
    stale = [
        r["bucket"] for r in await conn.fetch(sql.query("stale_hours"), window.start, window.end)
    ]
    parts = plan(window.start, window.end, stale)
    return list(
        await conn.fetch(
            sql.query("statistics_merged"), *parts.arguments(ids, groups, whole_metric)
        )
    )


async def check_raw_rows(
    conn: asyncpg.Connection,
    ids: list[int],
    window: Window,
    limit: int | None,
    whole_metric: int | None,
) -> None:
    """Refuse (422) a query that would read more than `limit` raw events; counted on rollups."""
    if limit is None:
        return
    rows = await merged(conn, ids, [None] * len(ids), window, whole_metric)
    count = int(rows[0]["count"]) if rows else 0
    if count > limit:
        raise QueryTooLarge(
            f"The query would read {count:,} raw events; the limit is {limit:,} "
            "(QUERY_MAX_RAW_ROWS). Narrow the window or the tag filters, or use rollups "
            "(no exact=true, an interval of an hour or more)."
        )


async def statistics(
    conn: asyncpg.Connection,
    name: str,
    window: Window,
    selection: Selection,
    exact: bool,
    max_raw_rows: int | None = None,
) -> dict[str, Any]:
    found = await metric(conn, name)
    ids, groups = await series(conn, found["id"], selection)
    whole = found["id"] if selection.whole_metric else None
    if exact:
        await check_raw_rows(conn, ids, window, max_raw_rows, whole)
        rows = await conn.fetch(sql.query("statistics_raw"), ids, window.start, window.end, groups)
    else:
        rows = await merged(conn, ids, groups, window, whole)
    answer: dict[str, Any] = {"metric_name": found["name"]}
    if selection.group_by is None:
        answer.update(figures(rows[0] if rows else None))
    else:
        answer["group_by"] = selection.group_by
        answer["groups"] = [{"value": row["grp"], **figures(row)} for row in rows]
    answer.update(start=window.start, end=window.end, exact=exact)
    return answer
