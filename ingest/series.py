"""(metric name, canonical tags) -> series id, through an in-process cache backed by the database.

New metrics and series are inserted if absent inside the caller's transaction, so a refused batch
leaves no trace; the cache learns them only once that transaction has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import msgspec

import sql
from ingest.wire import MetricEvent
from service.errors import ValidationFailed, field_error


@dataclass(frozen=True)
class Metric:
    id: int
    name: str
    metric_type: str


def canonical_tags(tags: dict[str, str]) -> str:
    """The JSON text of a tag set with sorted keys: one spelling per tag set."""
    return msgspec.json.encode(dict(sorted(tags.items()))).decode()


@dataclass
class Resolution:
    """Series ids for a batch, and what the cache may learn once the batch commits."""

    series_ids: list[int]
    new_metrics: dict[str, Metric] = field(default_factory=dict)
    new_series: dict[tuple[int, str], int] = field(default_factory=dict)


class SeriesRegistry:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._series: dict[tuple[int, str], int] = {}

    def remember(self, resolution: Resolution) -> None:
        self._metrics.update(resolution.new_metrics)
        self._series.update(resolution.new_series)

    def forget(self) -> None:
        self._metrics.clear()
        self._series.clear()

    async def _metrics_for(
        self, conn: asyncpg.Connection, events: Sequence[MetricEvent]
    ) -> dict[str, Metric]:
        missing: dict[str, MetricEvent] = {}
        for event in events:
            if event.metric_name not in self._metrics:
                missing.setdefault(event.metric_name, event)
        if not missing:
            return {}
        names = sorted(missing)
        await conn.execute(
            sql.query("ensure_metrics"),
            names,
            [missing[name].metric_type for name in names],
            [missing[name].unit for name in names],
        )
        rows = await conn.fetch(sql.query("metrics_by_name"), names)
        return {row["name"]: Metric(row["id"], row["name"], row["metric_type"]) for row in rows}

    async def resolve(self, conn: asyncpg.Connection, events: Sequence[MetricEvent]) -> Resolution:
        """Series ids for `events`, creating what is missing; refuses type changes (422)."""
        new_metrics = await self._metrics_for(conn, events)
        errors = []
        keys: list[tuple[int, str]] = []
        for index, event in enumerate(events):
            metric = self._metrics.get(event.metric_name) or new_metrics[event.metric_name]
            if metric.metric_type != event.metric_type:
                errors.append(
                    field_error(
                        "metric_type",
                        f"metric {metric.name!r} is a {metric.metric_type}; this event says "
                        f"{event.metric_type}",
                        index if len(events) > 1 else None,
                    )
                )
            keys.append((metric.id, canonical_tags(event.series_tags())))
        if errors:
            raise ValidationFailed(
                f"An event's metric_type differs from its metric's type: {errors[0]['reason']}",
                details=errors[:100],
            )

        unknown = sorted({key for key in keys if key not in self._series})
        new_series: dict[tuple[int, str], int] = {}
        if unknown:
            metric_ids = [key[0] for key in unknown]
            tag_sets = [key[1] for key in unknown]
            await conn.execute(sql.query("ensure_series"), metric_ids, tag_sets)
            for position, series_id in await conn.fetch(
                sql.query("series_ids"), metric_ids, tag_sets
            ):
                new_series[unknown[position - 1]] = series_id
        ids = [self._series.get(key) or new_series[key] for key in keys]
        return Resolution(ids, new_metrics, new_series)
