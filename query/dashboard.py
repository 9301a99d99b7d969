"""GET /api/v1/analytics/dashboard?days=7: the seed's dashboard in one answer.

- `current_metrics`: the current UTC day so far (totals: as of now), from raw events, at most
  DASHBOARD_CACHE_S old;
- `trends`: platform figures per UTC day, the last `days` days oldest first (today included),
  materialised rows for tracked days;
- `performance`: the performance summary over the same days (query/performance.py);
- `monitoring`: the health summary and the open (and acknowledged) incidents.

The platform days and the rest are read concurrently, on a pooled connection each.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request

import sql
from alerts.incidents import select as incidents
from core.db import connection
from core.http import JSON
from core.params import Window, whole_number
from core.periods import spanning
from monitoring.status import health_summary
from query import performance
from query.entities import platform_periods

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
    days = whole_number(request.query_params, "days", 7, 1, 366)
    state = request.app.state
    now = datetime.now(UTC)
    spans = spanning("day", now - timedelta(days=days - 1), now)

    async def watch() -> tuple[dict[str, Any], dict[str, Any]]:
        async with connection(state.pool) as conn:
            perf = await performance.summary(conn, Window(spans[0][0], now))
            health = await health_summary(conn)
            counts = await conn.fetch(sql.query("incidents_open_counts"))
            listed = await incidents(conn, limit=INCIDENTS_LISTED)
        by_severity = {row["severity"]: row["incidents"] for row in counts}
        return perf, {
            "health": health,
            "open_incidents": sum(by_severity.values()),
            "incidents_by_severity": by_severity,
            "incidents": listed,
        }

    try:
        async with asyncio.TaskGroup() as group:  # one failing cancels the other
            trends = group.create_task(
                platform_periods(state.pool, "day", spans, state.live_figures)
            )
            rest = group.create_task(watch())
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the API's error (503, 504, ...) as such
    rows = trends.result()
    perf, monitoring = rest.result()
    return JSON(
        {
            "days": days,
            "current_metrics": current(rows[-1]),
            "trends": rows,
            "performance": perf,
            "monitoring": monitoring,
        }
    )
