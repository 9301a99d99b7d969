"""What has been recorded: metric names, types and units, and each metric's tags."""

from __future__ import annotations

from dataclasses import dataclass
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


VALUES_PER_KEY = 1000  # a page of a key's values, by default
MOST_VALUES_PER_KEY = 10_000


@dataclass(frozen=True)
class TagPage:
    """Which tags a listing answers: every key or one (`key`), at most `limit` values each,
    those after `after` (with `key`: the next page of that key's values)."""

    key: str | None = None
    limit: int = VALUES_PER_KEY
    after: str | None = None


async def values(
    conn: asyncpg.Connection, metric_id: int, key: str, limit: int, after: str | None = None
) -> list[asyncpg.Record]:
    """One page of a key's values in order, each with its series count."""
    if after is None:
        return list(await conn.fetch(sql.query("metric_tag_values"), metric_id, key, limit))
    return list(
        await conn.fetch(sql.query("metric_tag_values_after"), metric_id, key, limit, after)
    )


async def tags(conn: asyncpg.Connection, name: str, page: TagPage = TagPage()) -> dict[str, Any]:
    """Each tag key with a page of its values; `next` is the `after` of the key's next page
    (null on its last). The cost is the page's, however many series the metric has."""
    found = await metric(conn, name)
    keys = (
        [page.key]
        if page.key is not None
        else [row["key"] for row in await conn.fetch(sql.query("metric_tag_keys"), found["id"])]
    )
    listed = []
    for key in keys:
        rows = await values(conn, found["id"], key, page.limit + 1, page.after)
        if not rows and page.after is None:
            continue  # (a key no series of the metric has)
        shown = rows[: page.limit]
        listed.append(
            {
                "key": key,
                "values": [{"value": row["value"], "series": row["series"]} for row in shown],
                "next": shown[-1]["value"] if len(rows) > page.limit else None,
            }
        )
    return {"metric_name": found["name"], "tags": listed}
