"""Stores validated events: resolve series, binary COPY, commit; all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from ingest.series import SeriesRegistry
from ingest.wire import MetricEvent

EVENT_COLUMNS = ("time", "series_id", "value")


async def store(
    conn: asyncpg.Connection,
    registry: SeriesRegistry,
    events: Sequence[MetricEvent],
    now: datetime,
) -> int:
    """Commit `events` in one transaction and return how many were stored."""
    async with conn.transaction():
        resolution = await registry.resolve(conn, events)
        records = [
            (event.time(now), series_id, event.value)
            for event, series_id in zip(events, resolution.series_ids, strict=True)
        ]
        await conn.copy_records_to_table(
            "metric_events", schema_name="analytics", columns=EVENT_COLUMNS, records=records
        )
    registry.remember(resolution)
    return len(records)
