"""GET /api/v1/analytics/dashboard?days=7: the seed's dashboard in one answer.

- `current_metrics`: the current UTC day so far (totals: as of now), from raw events, at most
  DASHBOARD_CACHE_S old;
- `trends`: platform figures per UTC day, the last `days` days oldest first (today included),
  materialised rows for tracked days;
- `performance`: the performance summary over the same days (query/performance.py);
- `monitoring`: the health summary and the open (and acknowledged) incidents.

The four parts are read concurrently, each on its own pooled connection.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from alerts.incidents import select as incidents
from monitoring.status import health_summary
from query import performance
from query.entities import platform_periods
from query.params import Window, number
from service.db import connection
from service.http import JSON
from service.periods import spanning

INCIDENTS_LISTED = 20


def current(today: dict[str, Any]) -> dict[str, Any]:
    return {
        "period_start": today["period_start"],
        "period_end": today["period_end"],
        "users": {
            "total": today["users_total"],
            "active": today["users_active"],
            "new": today["users_new"],
        },
        "agents": {
            "total": today["agents_total"],
            "active": today["agents_active"],
            "new": today["agents_new"],
        },
        "contracts": {
            "total": today["contracts_total"],
            "active": today["contracts_active"],
            "completed": today["contracts_completed"],
            "failed": today["contracts_failed"],
        },
        "financial": {
            "revenue": today["revenue"],
            "platform_fees": today["platform_fees"],
            "credits_purchased": today["credits_purchased"],
            "credits_spent": today["credits_spent"],
        },
    }


async def dashboard(request: Request) -> JSON:
    """GET /api/v1/analytics/dashboard?days=7 (1 to 366)."""
    days = int(number(request.query_params, "days", 7, 1, 366))
    pool = request.app.state.pool
    now = datetime.now(UTC)
    spans = spanning("day", now - timedelta(days=days - 1), now)

    async def trends() -> list[dict[str, Any]]:
        async with connection(pool) as conn:
            return await platform_periods(conn, "day", spans, request.app.state.live_figures)

    async def summary() -> dict[str, Any]:
        async with connection(pool) as conn:
            return await performance.summary(conn, Window(spans[0][0], now))

    async def monitoring() -> dict[str, Any]:
        async with connection(pool) as conn:
            health = await health_summary(conn)
            found = await incidents(conn)
        return {
            "health": health,
            "open_incidents": len(found),
            "incidents_by_severity": dict(Counter(i["severity"] for i in found)),
            "incidents": found[:INCIDENTS_LISTED],
        }

    rows, perf, watch = await asyncio.gather(trends(), summary(), monitoring())
    return JSON(
        {
            "days": days,
            "current_metrics": current(rows[-1]),
            "trends": rows,
            "performance": perf,
            "monitoring": watch,
        }
    )


routes = [Route("/api/v1/analytics/dashboard", dashboard, methods=["GET"])]
