"""Statistics of a metric over a time window, from the rollup tiers and the pending deltas
(query/plan.py), or with exact=true from raw events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

import sql
from core.errors import NotFound, QueryTooLarge
from core.params import Window
from query.plan import Marks, Plan, plan

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


def unknown_metric(name: str) -> NotFound:
    return NotFound(f"No metric named {name!r} has been recorded.")


async def metric(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await conn.fetchrow(sql.query("metric_by_name"), name)
    if row is None:
        raise unknown_metric(name)
    return row


async def series(
    conn: asyncpg.Connection, metric_id: int, selection: Selection
) -> tuple[list[int], list[str | None]]:
    if selection.filters:
        pairs = [(key, value) for key, values in selection.filters.items() for value in values]
        rows = await conn.fetch(
            sql.query("metric_series_filtered"),
            metric_id,
            [key for key, _ in pairs],
            [value for _, value in pairs],
            len(selection.filters),
            selection.group_by,
        )
    else:
        rows = await conn.fetch(sql.query("metric_series"), metric_id, selection.group_by)
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


async def metric_and_marks(conn: asyncpg.Connection, name: str) -> tuple[asyncpg.Record, Marks]:
    """A metric (404 when unknown) and the tier watermarks a query plans by, read together."""
    row = await conn.fetchrow(sql.query("metric_with_marks"), name)
    if row is None:
        raise unknown_metric(name)
    return row, Marks(
        row["hours"], row["days"], row["series_minutes"], row["metric_minutes"], row["now"]
    )


@dataclass(frozen=True)
class Owners:
    """What a query reads: the metric's own tier rows, or those of some of its series."""

    kind: str  # 'metric' or 'series'
    ids: list[int]
    groups: list[str | None]


async def owners(conn: asyncpg.Connection, metric_id: int, selection: Selection) -> Owners:
    if selection.whole_metric:  # never lists the series: 100,000 of them cost as much as one
        return Owners("metric", [metric_id], [None])
    ids, groups = await series(conn, metric_id, selection)
    return Owners("series", ids, groups)


async def raw_series(
    conn: asyncpg.Connection,
    metric_id: int,
    selection: Selection,
    read: Owners,
    window: Window,
    limit: int | None,
    marks: Marks,
) -> tuple[list[int], list[str | None]]:
    """The series raw events are read by, with their groups (a whole metric lists them here,
    for raw reads only), once check_raw_rows lets the read through."""
    await check_raw_rows(conn, read, window, limit, marks)
    if read.kind == "series":
        return read.ids, read.groups
    return await series(conn, metric_id, selection)


async def from_tiers(conn: asyncpg.Connection, read: Owners, parts: Plan) -> list[asyncpg.Record]:
    """Statistics per group from the tiers and the pending deltas (see statistics_tiers)."""
    return list(
        await conn.fetch(
            sql.tier_query("statistics_tiers", read.kind), *parts.arguments(read.ids, read.groups)
        )
    )


async def check_raw_rows(
    conn: asyncpg.Connection, read: Owners, window: Window, limit: int | None, found: Marks
) -> None:
    """Refuse (422) a query that would read more than `limit` raw events; counted on tiers."""
    if limit is None:
        return
    whole = Owners(read.kind, read.ids, [None] * len(read.ids))
    rows = await from_tiers(conn, whole, plan(window.start, window.end, found, read.kind))
    count = int(rows[0]["count"]) if rows else 0
    if count > limit:
        raise QueryTooLarge(
            f"The query would read {count:,} raw events; the limit is {limit:,} "
            "(QUERY_MAX_RAW_ROWS). Narrow the window or the tag filters, or use rollups "
            "(no exact=true, an interval the minute tier holds)."
        )


async def statistics(
    conn: asyncpg.Connection,
    name: str,
    window: Window,
    selection: Selection,
    exact: bool,
    max_raw_rows: int | None = None,
) -> dict[str, Any]:
    found, found_marks = await metric_and_marks(conn, name)
    read = await owners(conn, found["id"], selection)
    rows, answered = await grouped(
        conn, found["id"], found_marks, read, selection, window, exact, max_raw_rows
    )
    by_group = {row["grp"]: figures(row) for row in rows}  # ungrouped: one row, group None
    return answer(found["name"], selection, by_group, figures(None), answered, exact)


def answer(
    name: str,
    selection: Selection,
    by_group: dict[str | None, dict[str, Any]],
    empty: dict[str, Any],
    answered: Window,
    exact: bool,
    **extra: Any,
) -> dict[str, Any]:
    """A statistics answer: the figures of the whole selection (`empty` if none), or of each
    group_by value in `by_group`'s order, and the window answered."""
    found: dict[str, Any] = {"metric_name": name, **extra}
    if selection.group_by is None:
        found.update(by_group.get(None, empty))
    else:
        found["group_by"] = selection.group_by
        found["groups"] = [{"value": group, **shown} for group, shown in by_group.items()]
    found.update(start=answered.start, end=answered.end, exact=exact)
    return found


async def grouped(
    conn: asyncpg.Connection,
    metric_id: int,
    marks: Marks,
    read: Owners,
    selection: Selection,
    window: Window,
    exact: bool,
    max_raw_rows: int | None,
) -> tuple[list[asyncpg.Record], Window]:
    """The statistics rows of `read` by group, and the window they answer: from raw events
    with `exact`, else from the tiers."""
    if exact:
        ids, groups = await raw_series(
            conn, metric_id, selection, read, window, max_raw_rows, marks
        )
        rows = await conn.fetch(sql.query("statistics_raw"), ids, window.start, window.end, groups)
        return list(rows), window
    parts = plan(window.start, window.end, marks, read.kind)
    return await from_tiers(conn, read, parts), Window(parts.start, parts.end)
