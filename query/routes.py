"""HTTP endpoints of the read path."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.routing import Route

from query import params
from query.statistics import Selection, statistics
from query.timeseries import time_series
from service.db import connection
from service.http import JSON


async def metric_statistics(request: Request) -> JSON:
    """GET /api/v1/analytics/metrics/{name}/statistics?hours=24 (or start/end)."""
    query = request.query_params
    window = params.window(query, datetime.now(UTC))
    selection = Selection(params.tag_filters(query), params.group_by(query))
    exact = params.flag(query, "exact")
    async with connection(request.app.state.pool) as conn:
        body = await statistics(conn, request.path_params["name"], window, selection, exact)
    return JSON(body)


async def metric_time_series(request: Request) -> JSON:
    """GET /api/v1/analytics/metrics/{name}/time-series?hours=24&interval=1h&agg=avg."""
    query = request.query_params
    window = params.window(query, datetime.now(UTC))
    selection = Selection(params.tag_filters(query), params.group_by(query))
    width, agg = params.interval(query), params.aggregation(query)
    async with connection(request.app.state.pool) as conn:
        body = await time_series(conn, request.path_params["name"], window, selection, width, agg)
    return JSON(body)


routes = [
    Route("/api/v1/analytics/metrics/{name}/statistics", metric_statistics, methods=["GET"]),
    Route("/api/v1/analytics/metrics/{name}/time-series", metric_time_series, methods=["GET"]),
]
