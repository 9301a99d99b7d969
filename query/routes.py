"""HTTP endpoints of the read path."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from core import params
from core.db import connection
from core.errors import NotFound
from core.http import JSON, Endpoint
from query import catalog, classic, dashboard, entities, performance
from query.statistics import Selection, statistics
from query.timeseries import time_series


def max_raw_rows(request: Request) -> int:
    return int(request.app.state.settings.query_max_raw_rows)


async def metric_statistics(request: Request) -> JSON:
    """GET /api/v1/analytics/metrics/{name}/statistics?hours=24 (or start/end)."""
    query = request.query_params
    window = params.window(query, datetime.now(UTC))
    selection = Selection(params.tag_filters(query), params.group_by(query))
    exact = params.flag(query, "exact")
    name, most = request.path_params["name"], max_raw_rows(request)
    async with connection(request.app.state.pool) as conn:
        try:
            body = await statistics(conn, name, window, selection, exact, most)
        except NotFound:  # perhaps a classic histogram's family (its `_bucket` counters)
            body = await classic.statistics(conn, name, window, selection, exact, most)
    return JSON(body)


async def metric_time_series(request: Request) -> JSON:
    """GET /api/v1/analytics/metrics/{name}/time-series?hours=24&interval=1h&agg=avg."""
    query = request.query_params
    window = params.window(query, datetime.now(UTC))
    selection = Selection(params.tag_filters(query), params.group_by(query))
    width, agg = params.interval(query), params.aggregation(query)
    name, most = request.path_params["name"], max_raw_rows(request)
    async with connection(request.app.state.pool) as conn:
        try:
            body = await time_series(conn, name, window, selection, width, agg, most)
        except NotFound:  # perhaps a classic histogram's family (its `_bucket` counters)
            body = await classic.time_series(conn, name, window, selection, width, agg, most)
    return JSON(body)


async def metric_list(request: Request) -> JSON:
    """GET /api/v1/analytics/metrics: every metric with its type, unit and series count."""
    async with connection(request.app.state.pool) as conn:
        return JSON(await catalog.metrics(conn))


async def metric_tags(request: Request) -> JSON:
    """GET /api/v1/analytics/metrics/{name}/tags?key=&limit=&after=: tag keys and their
    values, a page at a time."""
    query = request.query_params
    page = catalog.TagPage(
        key=query.get("key"),
        limit=params.whole_number(
            query, "limit", catalog.VALUES_PER_KEY, 1, catalog.MOST_VALUES_PER_KEY
        ),
        after=query.get("after"),
    )
    if page.after is not None and page.key is None:
        raise params.bad("after", "needs key: it continues the values of one tag key")
    async with connection(request.app.state.pool) as conn:
        return JSON(await catalog.tags(conn, request.path_params["name"], page))


async def performance_summary(request: Request) -> JSON:
    """GET /api/v1/analytics/performance?hours=24: API calls, contracts, orchestrations."""
    window = params.window(request.query_params, datetime.now(UTC))
    async with connection(request.app.state.pool) as conn:
        return JSON(await performance.summary(conn, window))


routes = [
    Endpoint("GET", "/api/v1/analytics/performance", performance_summary, "read"),
    Endpoint("GET", "/api/v1/analytics/metrics", metric_list, "read"),
    Endpoint("GET", "/api/v1/analytics/metrics/{name}/tags", metric_tags, "read"),
    Endpoint("GET", "/api/v1/analytics/metrics/{name}/statistics", metric_statistics, "read"),
    Endpoint("GET", "/api/v1/analytics/metrics/{name}/time-series", metric_time_series, "read"),
    Endpoint("GET", "/api/v1/analytics/platform/trends", entities.platform_trends, "read"),
    Endpoint("GET", "/api/v1/analytics/user/{id}", entities.user, "read"),
    Endpoint("GET", "/api/v1/analytics/user/{id}/trends", entities.user_trends, "read"),
    Endpoint("GET", "/api/v1/analytics/agent/{id}", entities.agent, "read"),
    Endpoint("GET", "/api/v1/analytics/agent/{id}/trends", entities.agent_trends, "read"),
    Endpoint("GET", "/api/v1/analytics/dashboard", dashboard.dashboard, "read"),
]
