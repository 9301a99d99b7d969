"""What has been recorded: metric names, types and units, and each metric's tags."""

from __future__ import annotations

from typing import Any

import asyncpg

import sql
from query.statistics import metric


async def metrics(conn: asyncpg.Connection) -> dict[str, Any]:
    rows = await conn.fetch(sql.query("metrics_list"))
    return {
        "metrics": [
            {
                "name": row["name"],
                "metric_type": row["metric_type"],
                "unit": row["unit"],
                "description": row["description"],
                "series": row["series"],
                "created_at": row["created_at"],
            }
            for row in rows
        ]
    }


async def tags(conn: asyncpg.Connection, name: str) -> dict[str, Any]:
    found = await metric(conn, name)
    keys: dict[str, list[dict[str, Any]]] = {}
    for row in await conn.fetch(sql.query("metric_tags"), found["id"]):
        keys.setdefault(row["key"], []).append({"value": row["value"], "series": row["series"]})
    return {
        "metric_name": found["name"],
        "tags": [{"key": key, "values": values} for key, values in keys.items()],
    }
