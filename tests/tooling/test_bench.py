"""The benchmark's loaders write what the API would have stored: a broken loader is a
`make bench` that stops at its first suite, which the suite itself never runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg

from bench import copy_events, copy_floats, new_metric


def test_loaders_store_events_readable_through_the_view(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    end = datetime(2026, 1, 2, tzinfo=UTC)

    async def load() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            ids = await new_metric(conn, "bench.loader", ['{"pod": "a"}', '{"pod": "b"}'])
            await copy_events(conn, [(end - timedelta(minutes=1), ids[0], 12.34)])
            await copy_floats(conn, [(end - timedelta(minutes=2), ids[1], 0.1)])
        finally:
            await conn.close()

    asyncio.run(load())
    rows = db.execute(
        "SELECT s.tags->>'pod', e.value, e.time FROM analytics.metric_events AS e "
        "JOIN analytics.series AS s ON s.id = e.series_id ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("a", 12.34, end - timedelta(minutes=1)),
        ("b", 0.1, end - timedelta(minutes=2)),
    ]
