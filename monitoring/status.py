"""Health summary, one service's health with its history, and SLA figures (seed shapes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request

import sql
from core.db import connection
from core.http import JSON
from core.params import number
from monitoring.services import by_name

# The overall status is the worst of the services'; an unknown service counts as degraded.
SEVERITY = {"healthy": 0, "degraded": 1, "unknown": 1, "unhealthy": 2}


def entry(service: dict[str, Any]) -> dict[str, Any]:
    return {
        "service_name": service["name"],
        "service_type": service["service_type"],
        "status": service["status"],
        "response_time_ms": service["response_time_ms"],
        "consecutive_failures": service["consecutive_failures"],
        "last_checked": service["last_checked"],
        "error": service["error"],
    }


async def health_summary(conn: Any) -> dict[str, Any]:
    """The overall status and every service's latest one."""
    rows = await conn.fetch(sql.query("services_health"), None)
    statuses = [row["status"] for row in rows]
    worst = max(statuses, key=lambda s: SEVERITY[s], default="unknown")
    overall = {0: "healthy", 1: "degraded", 2: "unhealthy"}[SEVERITY[worst]] if rows else "unknown"
    return {
        "overall_status": overall,
        "total_services": len(rows),
        "healthy": statuses.count("healthy"),
        "degraded": statuses.count("degraded"),
        "unhealthy": statuses.count("unhealthy"),
        "unknown": statuses.count("unknown"),
        "services": [entry(dict(row)) for row in rows],
    }


async def summary(request: Request) -> JSON:
    """GET /monitoring/health."""
    async with connection(request.app.state.pool) as conn:
        return JSON(await health_summary(conn))


async def service_health(request: Request) -> JSON:
    """GET /monitoring/health/{service}: where it stands and its latest results."""
    limit = int(number(request.query_params, "limit", 100, 0, 10_000))
    async with connection(request.app.state.pool) as conn:
        service = await by_name(conn, request.path_params["service"])
        history = await conn.fetch(sql.query("service_history"), service["id"], limit)
    return JSON({**entry(service), "history": [dict(row) for row in history]})


async def sla(request: Request) -> JSON:
    """GET /monitoring/sla/{service}?days=30."""
    days = number(request.query_params, "days", 30, 0, 3660)
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    async with connection(request.app.state.pool) as conn:
        service = await by_name(conn, request.path_params["service"])
        row = await conn.fetchrow(
            sql.query("service_sla"), service["id"], start, end, service["interval_seconds"]
        )
    up, down = float(row["up_s"]), float(row["down_s"])
    measured = up + down
    target = service["sla_target"]
    allowed = (1 - target / 100) * measured
    uptime = 100 * up / measured if measured else None
    return JSON(
        {
            "service_name": service["name"],
            "days": days,
            "start": start,
            "end": end,
            "uptime_percentage": uptime,
            "avg_response_time_ms": row["avg_response_time_ms"],
            "downtime_incidents": row["downtime_incidents"],
            "total_downtime_seconds": down,
            "degraded_seconds": float(row["degraded_s"]),
            "unknown_seconds": max(0.0, (end - start).total_seconds() - measured),
            "checks": row["checks"],
            "sla_target": target,
            "sla_met": uptime >= target if uptime is not None else None,
            "error_budget_remaining": {
                "seconds": allowed - down,
                "percent": 100 * (allowed - down) / allowed if allowed else None,
            },
        }
    )
