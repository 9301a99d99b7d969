"""The seed's performance summary, read from built-in metric names any client can record:

- ``api.response_time`` (timer, ms), tags ``endpoint``, ``method``, ``status`` (HTTP code);
- ``contract.execution_time`` (timer, ms), tags ``agent``, ``success`` (``true``/``false``);
- ``orchestration.duration`` (timer, ms) and ``orchestration.agent_count`` (gauge), tag
  ``pattern``.

A metric nobody has recorded yet gives a section of zeros and nulls, not an error.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.errors import NotFound
from core.params import Window
from query import catalog
from query.statistics import Selection, metric, statistics

TOP = 20


async def _stats(
    conn: asyncpg.Connection, name: str, window: Window, selection: Selection
) -> dict[str, Any] | None:
    try:
        return await statistics(conn, name, window, selection, exact=False)
    except NotFound:
        return None


async def _values(conn: asyncpg.Connection, name: str, key: str) -> list[str]:
    try:
        found = await metric(conn, name)
    except NotFound:
        return []
    rows = await catalog.values(conn, found["id"], key, catalog.MOST_VALUES_PER_KEY)
    return [row["value"] for row in rows]


def _breakdown(answer: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    if answer is None:
        return []
    groups = sorted(answer["groups"], key=lambda g: -g["count"])[:TOP]
    return [
        {key: g["value"], "count": g["count"], "avg_ms": g["avg"], "p95_ms": g["p95"]}
        for g in groups
    ]


def _count(answer: dict[str, Any] | None) -> int:
    return int(answer["count"]) if answer else 0


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


async def api(conn: asyncpg.Connection, window: Window) -> dict[str, Any]:
    name = "api.response_time"
    overall = await _stats(conn, name, window, Selection({}))
    errors_filter = [s for s in await _values(conn, name, "status") if s.startswith("5")]
    errors = (
        await _stats(conn, name, window, Selection({"status": errors_filter}))
        if errors_filter
        else None
    )
    calls = _count(overall)
    return {
        "calls": calls,
        "errors": _count(errors),
        "error_rate": _share(_count(errors), calls),
        "avg_response_time_ms": overall["avg"] if overall else None,
        "p50_ms": overall["p50"] if overall else None,
        "p95_ms": overall["p95"] if overall else None,
        "p99_ms": overall["p99"] if overall else None,
        "by_endpoint": _breakdown(
            await _stats(conn, name, window, Selection({}, "endpoint")), "endpoint"
        ),
        "by_method": _breakdown(
            await _stats(conn, name, window, Selection({}, "method")), "method"
        ),
    }


async def contracts(conn: asyncpg.Connection, window: Window) -> dict[str, Any]:
    name = "contract.execution_time"
    overall = await _stats(conn, name, window, Selection({}))
    succeeded = await _stats(conn, name, window, Selection({"success": ["true"]}))
    executions = _count(overall)
    return {
        "executions": executions,
        "successful": _count(succeeded),
        "success_rate": _share(_count(succeeded), executions),
        "avg_execution_time_ms": overall["avg"] if overall else None,
        "p95_ms": overall["p95"] if overall else None,
        "by_agent": _breakdown(await _stats(conn, name, window, Selection({}, "agent")), "agent"),
    }


async def orchestrations(conn: asyncpg.Connection, window: Window) -> dict[str, Any]:
    overall = await _stats(conn, "orchestration.duration", window, Selection({}))
    agents = await _stats(conn, "orchestration.agent_count", window, Selection({}))
    return {
        "runs": _count(overall),
        "avg_duration_ms": overall["avg"] if overall else None,
        "p95_duration_ms": overall["p95"] if overall else None,
        "avg_agent_count": agents["avg"] if agents else None,
        "by_pattern": _breakdown(
            await _stats(conn, "orchestration.duration", window, Selection({}, "pattern")),
            "pattern",
        ),
    }


async def summary(conn: asyncpg.Connection, window: Window) -> dict[str, Any]:
    return {
        "start": window.start,
        "end": window.end,
        "api": await api(conn, window),
        "contracts": await contracts(conn, window),
        "orchestrations": await orchestrations(conn, window),
    }
