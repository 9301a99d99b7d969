"""HTTP endpoints of the read path."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.routing import Route

from query import params
from query.statistics import statistics
from service.db import connection
from service.http import JSON


async def metric_statistics(request: Request) -> JSON:
    """GET /api/v1/analytics/metrics/{name}/statistics?hours=24 (or start/end)."""
    window = params.window(request.query_params, datetime.now(UTC))
    async with connection(request.app.state.pool) as conn:
        body = await statistics(conn, request.path_params["name"], window)
    return JSON(body)


routes = [
    Route("/api/v1/analytics/metrics/{name}/statistics", metric_statistics, methods=["GET"]),
]
