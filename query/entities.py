"""User, agent and platform analytics for UTC calendar periods (core/periods.py).

User and agent figures come from the entity's own raw events (an index range per entity, so
always current); platform figures from the rows batch tracking materialised when the period is
clean, else from raw events. Both through the same SQL definitions
(sql/idempotent/0200_entity_figures.sql), so the answers are identical.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from starlette.requests import Request

import sql
from core.db import connection, deadline, detached
from core.errors import DatabaseTimeout, NotFound
from core.http import JSON
from core.params import bad, number, timestamp
from core.periods import PERIODS, period_bounds, previous_start

# A user or agent with no events in a period.
USER_IDLE: dict[str, Any] = {
    "sessions": 0,
    "page_views": 0,
    "actions": 0,
    "active_time_seconds": 0.0,
    "contracts_created": 0,
    "contracts_completed": 0,
    "contracts_cancelled": 0,
    "credits_purchased": 0.0,
    "credits_spent": 0.0,
    "total_spent": 0.0,
    "agents_used": 0,
    "orchestrations_run": 0,
}
AGENT_IDLE: dict[str, Any] = {
    "calls_total": 0,
    "calls_successful": 0,
    "calls_failed": 0,
    "success_rate": None,
    "response_time_avg_ms": None,
    "response_time_p50_ms": None,
    "response_time_p95_ms": None,
    "response_time_p99_ms": None,
    "uptime_percentage": None,
    "downtime_percentage": None,
    "bids_placed": 0,
    "average_bid_price": None,
    "contracts_won": 0,
    "contracts_completed": 0,
    "contracts_failed": 0,
    "revenue": 0.0,
    "validation_score": None,
    "reputation_score": None,
}


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


def _figures(row: Any, idle: dict[str, Any]) -> dict[str, Any]:
    """The figures of a function's row (without the id and period), or those of an idle one."""
    if row is None:
        return dict(idle)
    return {name: row[name] for name in idle}


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
            **_figures(row, USER_IDLE),
        }
    )


def _until(start: datetime, end: datetime) -> datetime:
    """Where uptime stops counting: the period's end, or now in the current period."""
    return max(min(end, datetime.now(UTC)), start)


async def agent(request: Request) -> JSON:
    """GET /api/v1/analytics/agent/{id}?period_type=day&period_start=..."""
    agent_id = request.path_params["id"]
    period_type, start, end = period(request)
    async with connection(request.app.state.pool) as conn:
        await _seen(conn, "agent", agent_id)
        row = await conn.fetchrow(
            sql.query("agent_period"), agent_id, start, end, _until(start, end)
        )
    return JSON(
        {
            "agent_id": agent_id,
            "period_type": period_type,
            "period_start": start,
            "period_end": end,
            **_figures(row, AGENT_IDLE),
        }
    )


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


def _series(
    spans: list[tuple[datetime, datetime]], rows: list[Any], idle: dict[str, Any]
) -> list[dict[str, Any]]:
    """One entry per period, oldest first; periods without a row are idle ones."""
    by_start = {row["period_start"]: row for row in rows}
    return [
        {"period_start": lo, "period_end": hi, **_figures(by_start.get(lo), idle)}
        for lo, hi in spans
    ]


async def user_trends(request: Request) -> JSON:
    """GET /api/v1/analytics/user/{id}/trends?days=30&period_type=day."""
    user_id = request.path_params["id"]
    period_type, spans = periods(request)
    async with connection(request.app.state.pool) as conn:
        await _seen(conn, "user", user_id)
        rows = await conn.fetch(
            sql.query("user_periods"), user_id, [lo for lo, _ in spans], [hi for _, hi in spans]
        )
    return JSON(
        {"user_id": user_id, "period_type": period_type, "periods": _series(spans, rows, USER_IDLE)}
    )


async def agent_trends(request: Request) -> JSON:
    """GET /api/v1/analytics/agent/{id}/trends?days=30&period_type=day."""
    agent_id = request.path_params["id"]
    period_type, spans = periods(request)
    async with connection(request.app.state.pool) as conn:
        await _seen(conn, "agent", agent_id)
        rows = await conn.fetch(
            sql.query("agent_periods"),
            agent_id,
            [lo for lo, _ in spans],
            [hi for _, hi in spans],
            [_until(lo, hi) for lo, hi in spans],
        )
    return JSON(
        {
            "agent_id": agent_id,
            "period_type": period_type,
            "periods": _series(spans, rows, AGENT_IDLE),
        }
    )


PLATFORM_FIGURES = (
    "users_total",
    "users_active",
    "users_new",
    "users_churned",
    "agents_total",
    "agents_active",
    "agents_new",
    "contracts_total",
    "contracts_active",
    "contracts_completed",
    "contracts_failed",
    "revenue",
    "platform_fees",
    "credits_purchased",
    "credits_spent",
    "response_time_avg_ms",
    "error_rate",
    "throughput_per_s",
    "api_calls",
    "orchestrations",
    "fraud_alerts",
    "security_events",
)


class LiveFigures:
    """The platform figures of the periods still open, computed from raw events at most once
    per `ttl` seconds each (DASHBOARD_CACHE_S): concurrent requests share one computation (a
    failure reaches all of them and is not kept), and figures are at most `ttl` old. 0 computes
    them on every request. A computation has a budget of its own (`bound_s`, a request's
    normal bound), not that of the request that started it; a request waits for it no longer
    than its own budget."""

    def __init__(self, ttl: float, bound_s: float) -> None:
        self.ttl = ttl
        self.bound_s = bound_s
        self.entries: dict[tuple[str, datetime], tuple[float, dict[str, Any]]] = {}
        self.flights: dict[tuple[str, datetime], asyncio.Task[dict[str, Any]]] = {}

    async def get(
        self, key: tuple[str, datetime], compute: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        if self.ttl <= 0:
            return await compute()
        hit = self.entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        flight = self.flights.get(key)
        if flight is None:
            flight = detached(self._fill(key, compute), self.bound_s)
            flight.add_done_callback(lambda done: done.cancelled() or done.exception())
            self.flights[key] = flight
        try:
            async with asyncio.timeout_at(deadline()):
                return await asyncio.shield(flight)
        except TimeoutError:
            raise DatabaseTimeout() from None

    async def _fill(
        self, key: tuple[str, datetime], compute: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        try:
            value = await compute()
            now = time.monotonic()
            for old in [k for k, (at, _) in self.entries.items() if now - at >= self.ttl]:
                del self.entries[old]
            self.entries[key] = (now, value)
            return value
        finally:
            del self.flights[key]


async def platform_periods(
    pool: Any,
    period_type: str,
    spans: list[tuple[datetime, datetime]],
    live: LiveFigures | None = None,
) -> list[dict[str, Any]]:
    """Platform figures per period, oldest first: materialised rows for clean periods, the
    rest computed from raw events (through `live` for the period still open, on a connection
    of its own: requests waiting for it hold none)."""

    async def raw(conn: Any, lo: datetime, hi: datetime) -> dict[str, Any]:
        row = await conn.fetchrow(
            sql.query("platform_period"), lo, hi, previous_start(period_type, lo)
        )
        return {name: row[name] for name in PLATFORM_FIGURES}

    async def fresh(lo: datetime, hi: datetime) -> dict[str, Any]:
        async with connection(pool) as conn:
            return await raw(conn, lo, hi)

    now = datetime.now(UTC)
    figures: dict[datetime, dict[str, Any]] = {}
    still_open = []
    async with connection(pool) as conn:
        for row in await conn.fetch(
            sql.query("platform_tracked"), period_type, [lo for lo, _ in spans]
        ):
            figures[row["period_start"]] = {name: row[name] for name in PLATFORM_FIGURES}
        for lo, hi in spans:
            if lo in figures:
                continue
            if live is not None and hi > now:
                still_open.append((lo, hi))
            else:
                figures[lo] = await raw(conn, lo, hi)
    for lo, hi in still_open:
        assert live is not None
        figures[lo] = await live.get((period_type, lo), partial(fresh, lo, hi))
    return [{"period_start": lo, "period_end": hi, **figures[lo]} for lo, hi in spans]


async def platform_trends(request: Request) -> JSON:
    """GET /api/v1/analytics/platform/trends?days=30&period_type=day."""
    period_type, spans = periods(request)
    state = request.app.state
    rows = await platform_periods(state.pool, period_type, spans, state.live_figures)
    return JSON({"period_type": period_type, "periods": rows})
