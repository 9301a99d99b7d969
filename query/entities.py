"""User and agent analytics for one UTC calendar period, from the entity's own events.

Periods: `hour`, `day`, `week` (ISO: Monday 00:00 UTC) and `month` (the 1st, 00:00 UTC); the
current one by default, or the one containing `period_start`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

import sql
from query.params import bad, number, timestamp
from service.db import connection
from service.errors import NotFound
from service.http import JSON

PERIODS = ("hour", "day", "week", "month")


def period_bounds(period_type: str, moment: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar period of `period_type` that contains `moment`."""
    moment = moment.astimezone(UTC)
    if period_type == "hour":
        start = moment.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period_type == "day":
        return day, day + timedelta(days=1)
    if period_type == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(weeks=1)
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following


def period(request: Request) -> tuple[str, datetime, datetime]:
    query = request.query_params
    period_type = query.get("period_type", "day")
    if period_type not in PERIODS:
        raise bad("period_type", f"expected one of {', '.join(PERIODS)}")
    start, end = period_bounds(period_type, timestamp(query, "period_start") or datetime.now(UTC))
    return period_type, start, end


async def _seen(conn: Any, kind: str, entity: str) -> None:
    if not await conn.fetchval(sql.query("entity_seen"), kind, entity):
        raise NotFound(f"No events name the {kind} {entity!r}.")


async def user(request: Request) -> JSON:
    """GET /api/v1/analytics/user/{id}?period_type=day&period_start=..."""
    user_id = request.path_params["id"]
    period_type, start, end = period(request)
    async with connection(request.app.state.pool) as conn:
        await _seen(conn, "user", user_id)
        row = await conn.fetchrow(sql.query("user_period"), user_id, start, end)
    return JSON(
        {
            "user_id": user_id,
            "period_type": period_type,
            "period_start": start,
            "period_end": end,
            **dict(row),
        }
    )


async def _agent_figures(
    conn: Any, agent_id: str, start: datetime, end: datetime
) -> dict[str, Any]:
    elapsed_end = max(min(end, datetime.now(UTC)), start)
    row = dict(await conn.fetchrow(sql.query("agent_period"), agent_id, start, end, elapsed_end))
    p50, p95, p99 = row.pop("response_time_percentiles") or (None, None, None)
    up, down = float(row.pop("up_s")), float(row.pop("down_s"))
    total = row["calls_total"]
    return {
        "period_start": start,
        "period_end": end,
        **row,
        "success_rate": row["calls_successful"] / total if total else None,
        "response_time_p50_ms": p50,
        "response_time_p95_ms": p95,
        "response_time_p99_ms": p99,
        "uptime_percentage": 100 * up / (up + down) if up + down else None,
        "downtime_percentage": 100 * down / (up + down) if up + down else None,
    }


async def agent(request: Request) -> JSON:
    """GET /api/v1/analytics/agent/{id}?period_type=day&period_start=..."""
    agent_id = request.path_params["id"]
    period_type, start, end = period(request)
    async with connection(request.app.state.pool) as conn:
        await _seen(conn, "agent", agent_id)
        figures = await _agent_figures(conn, agent_id, start, end)
    return JSON({"agent_id": agent_id, "period_type": period_type, **figures})


MAX_PERIODS = 400


def periods(request: Request) -> tuple[str, list[tuple[datetime, datetime]]]:
    """`days` back from now (default 30) in periods of `period_type` (default day), oldest
    first; every period is listed, also those with no events."""
    query = request.query_params
    period_type = query.get("period_type", "day")
    if period_type not in PERIODS:
        raise bad("period_type", f"expected one of {', '.join(PERIODS)}")
    days = number(query, "days", 30, 0, 3660)
    now = datetime.now(UTC)
    start, end = period_bounds(period_type, now - timedelta(days=days))
    found = [(start, end)]
    while found[-1][1] <= now:
        found.append(period_bounds(period_type, found[-1][1]))
        if len(found) > MAX_PERIODS:
            raise bad("days", f"more than {MAX_PERIODS} periods: shorten days or widen period_type")
    return period_type, found


async def user_trends(request: Request) -> JSON:
    """GET /api/v1/analytics/user/{id}/trends?days=30&period_type=day."""
    user_id = request.path_params["id"]
    period_type, spans = periods(request)
    async with connection(request.app.state.pool) as conn:
        await _seen(conn, "user", user_id)
        rows = [
            {
                "period_start": lo,
                "period_end": hi,
                **dict(await conn.fetchrow(sql.query("user_period"), user_id, lo, hi)),
            }
            for lo, hi in spans
        ]
    return JSON({"user_id": user_id, "period_type": period_type, "periods": rows})


async def agent_trends(request: Request) -> JSON:
    """GET /api/v1/analytics/agent/{id}/trends?days=30&period_type=day."""
    agent_id = request.path_params["id"]
    period_type, spans = periods(request)
    async with connection(request.app.state.pool) as conn:
        await _seen(conn, "agent", agent_id)
        rows = [await _agent_figures(conn, agent_id, lo, hi) for lo, hi in spans]
    return JSON({"agent_id": agent_id, "period_type": period_type, "periods": rows})


async def platform_figures(conn: Any, start: datetime, end: datetime) -> dict[str, Any]:
    before = start - (end - start)
    if end - start > timedelta(days=27):  # a month: the period before is the calendar month
        before = period_bounds("month", start - timedelta(days=1))[0]
    row = await conn.fetchrow(sql.query("platform_period"), start, end, before)
    return {"period_start": start, "period_end": end, **dict(row)}


async def platform_trends(request: Request) -> JSON:
    """GET /api/v1/analytics/platform/trends?days=30&period_type=day."""
    period_type, spans = periods(request)
    async with connection(request.app.state.pool) as conn:
        rows = [await platform_figures(conn, lo, hi) for lo, hi in spans]
    return JSON({"period_type": period_type, "periods": rows})


routes = [
    Route("/api/v1/analytics/platform/trends", platform_trends, methods=["GET"]),
    Route("/api/v1/analytics/user/{id}", user, methods=["GET"]),
    Route("/api/v1/analytics/user/{id}/trends", user_trends, methods=["GET"]),
    Route("/api/v1/analytics/agent/{id}", agent, methods=["GET"]),
    Route("/api/v1/analytics/agent/{id}/trends", agent_trends, methods=["GET"]),
]
