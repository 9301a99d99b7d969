"""(metric name, canonical tags) -> series id, through an in-process cache backed by the database.

A group commit resolves the series of several batches at once. Everything that can refuse a
batch (a metric's type, the series-per-metric limit) is decided before anything is inserted,
so a refused batch leaves no metric or series behind. New rows are inserted if absent inside
the group's transaction, and the cache learns them only once that transaction has committed.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

import sql
from core.db import connection
from core.errors import ApiError, ValidationFailed, field_error
from ingest.tagsets import interned
from ingest.validate import Batch
from ingest.wire import SeriesKey


@dataclass(frozen=True)
class Metric:
    id: int
    name: str
    metric_type: str


def tags_json(tag_set: int) -> str:
    return msgspec.json.encode(dict(interned.tags(tag_set))).decode()


@dataclass
class Resolution:
    """Per batch: its series ids, or why it is refused; and what the cache may learn."""

    outcomes: list[list[int] | ApiError]
    metrics: dict[str, Metric] = field(default_factory=dict)
    series: dict[SeriesKey, int] = field(default_factory=dict)
    metric_of: dict[int, int] = field(default_factory=dict)  # series id -> metric id, new ones


class SeriesRegistry:
    def __init__(self, max_series_per_metric: int) -> None:
        self.max_series_per_metric = max_series_per_metric
        self._metrics: dict[str, Metric] = {}
        self._series: dict[SeriesKey, int] = {}
        self._metric_of: dict[int, int] = {}

    def remember(self, resolution: Resolution) -> None:
        self._metrics.update(resolution.metrics)
        self._series.update(resolution.series)
        self._metric_of.update(resolution.metric_of)

    def forget(self) -> None:
        self._metrics.clear()
        self._series.clear()
        self._metric_of.clear()

    async def types_of(self, pool: asyncpg.Pool, names: Collection[str]) -> dict[str, str]:
        """The type of each of `names` that is a metric already (read once, then cached): a
        sender that does not say a sample's type (remote write 1.0) gets the metric's own."""
        unknown = sorted(name for name in names if name not in self._metrics)
        if unknown:
            async with connection(pool) as conn:
                rows = await conn.fetch(sql.query("metrics_by_name"), unknown)
            for row in rows:
                self._metrics[row["name"]] = Metric(row["id"], row["name"], row["metric_type"])
        return {name: self._metrics[name].metric_type for name in names if name in self._metrics}

    def metric_of(self, resolution: Resolution) -> Mapping[int, int]:
        """The metric of every series a resolution names, known before or found by it."""
        if not resolution.metric_of:
            return self._metric_of
        return ChainMap(resolution.metric_of, self._metric_of)

    def known(self, batches: Sequence[Batch]) -> Resolution | None:
        """The steady state: every series is known, nothing to ask the database (else None)."""
        cached = self._series
        try:
            return Resolution([[cached[key] for key in batch.keys] for batch in batches])
        except KeyError:
            return None

    async def resolve(self, conn: asyncpg.Connection, batches: Sequence[Batch]) -> Resolution:
        return self.known(batches) or await _Group(self, conn, batches).resolve()


class _Group:
    """The slow path of one group's resolution, for batches that name unknown series."""

    def __init__(
        self, registry: SeriesRegistry, conn: asyncpg.Connection, batches: Sequence[Batch]
    ) -> None:
        self.registry = registry
        self.conn = conn
        self.batches = batches
        self.metrics: dict[str, Metric] = dict(registry._metrics)
        self.series: dict[SeriesKey, int] = {}

    def known(self, key: SeriesKey) -> int | None:
        return self.registry._series.get(key) or self.series.get(key)

    async def _load_metrics(self, names: set[str]) -> None:
        rows = await self.conn.fetch(sql.query("metrics_by_name"), sorted(names))
        for row in rows:
            self.metrics[row["name"]] = Metric(row["id"], row["name"], row["metric_type"])

    async def _load_series(self, keys: list[SeriesKey]) -> None:
        ids = [self.metrics[name].id for name, _, _ in keys]
        tag_sets = [tags_json(tag_set) for _, _, tag_set in keys]
        for position, series_id in await self.conn.fetch(sql.query("series_ids"), ids, tag_sets):
            self.series[keys[position - 1]] = series_id

    async def resolve(self) -> Resolution:
        unknown = {key for batch in self.batches for key in batch.keys if not self.known(key)}
        await self._load_metrics({key[0] for key in unknown} - self.metrics.keys())
        await self._load_series(sorted(k for k in unknown if k[0] in self.metrics))
        counts = await self._series_counts(unknown)

        # Decide, batch by batch in arrival order, before writing anything.
        outcomes: list[list[int] | ApiError] = []
        new_metrics: dict[str, tuple[str, str | None]] = {}
        new_series: set[SeriesKey] = set()
        for batch in self.batches:
            refusal = self._refusal(batch, new_metrics, counts, new_series)
            if refusal is not None:
                outcomes.append(refusal)
                continue
            outcomes.append([])
            for event, key in zip(batch.events, batch.keys, strict=True):
                if event.metric_name not in self.metrics and event.metric_name not in new_metrics:
                    new_metrics[event.metric_name] = (event.metric_type, event.unit)
                if not self.known(key) and key not in new_series:
                    new_series.add(key)
                    counts[key[0]] = counts.get(key[0], 0) + 1

        await self._create_metrics(new_metrics, outcomes)
        accepted = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, list)]
        await self._create_series(
            sorted({k for i in accepted for k in self.batches[i].keys if not self.known(k)})
        )
        for index in accepted:
            outcomes[index] = [self._id(key) for key in self.batches[index].keys]
        learned = {n: m for n, m in self.metrics.items() if n not in self.registry._metrics}
        # Only keys of the metric's own type may be cached (see SeriesKey).
        series = {k: v for k, v in self.series.items() if self.metrics[k[0]].metric_type == k[1]}
        metric_of = {v: self.metrics[k[0]].id for k, v in series.items()}
        return Resolution(outcomes, learned, series, metric_of)

    def _id(self, key: SeriesKey) -> int:
        found = self.known(key)
        if found is None:
            raise RuntimeError(f"series {key!r} was neither found nor created")
        return found

    async def _series_counts(self, unknown: set[SeriesKey]) -> dict[str, int]:
        gaining = sorted(
            {
                self.metrics[key[0]].id
                for key in unknown
                if key[0] in self.metrics and key not in self.series
            }
        )
        if not gaining:
            return {}
        by_id = {metric.id: name for name, metric in self.metrics.items()}
        await self.conn.execute(sql.query("lock_metrics"), gaining)
        rows = await self.conn.fetch(sql.query("series_counts"), gaining)
        return {by_id[row["metric_id"]]: row["series"] for row in rows}

    def _refusal(
        self,
        batch: Batch,
        new_metrics: dict[str, tuple[str, str | None]],
        counts: dict[str, int],
        new_series: set[SeriesKey],
    ) -> ApiError | None:
        errors: list[dict[str, Any]] = []
        adds: dict[str, set[SeriesKey]] = {}
        first_seen: dict[str, str] = {}  # a metric this batch creates: the type of its first event
        for index, (event, key) in enumerate(zip(batch.events, batch.keys, strict=True)):
            metric = self.metrics.get(event.metric_name)
            fixed = metric.metric_type if metric else new_metrics.get(event.metric_name, (None,))[0]
            if fixed is None:
                fixed = first_seen.setdefault(event.metric_name, event.metric_type)
            if fixed != event.metric_type:
                errors.append(
                    field_error(
                        "metric_type",
                        f"metric {event.metric_name!r} is a {fixed}; this event says "
                        f"{event.metric_type}",
                        index,
                    )
                    | {"metric": event.metric_name}
                )
            elif not self.known(key) and key not in new_series:
                # (a key an earlier batch of the group creates is counted already)
                adds.setdefault(event.metric_name, set()).add(key)
        limit = self.registry.max_series_per_metric
        for name, keys in adds.items():
            if counts.get(name, 0) + len(keys) > limit:
                errors.append(
                    field_error(
                        "tags",
                        f"metric {name!r} has reached its limit of {limit} series; events with new "
                        "tag sets are refused (existing series still work)",
                    )
                    | {"metric": name}
                )
        if not errors:
            return None
        return ValidationFailed(
            f"{len(errors)} event(s) cannot be stored; nothing was stored: {errors[0]['reason']}",
            details=errors[:100],
        )

    async def _create_metrics(
        self, new: dict[str, tuple[str, str | None]], outcomes: list[list[int] | ApiError]
    ) -> None:
        if not new:
            return
        names = sorted(new)
        await self.conn.execute(
            sql.query("ensure_metrics"),
            names,
            [new[name][0] for name in names],
            [new[name][1] for name in names],
        )
        await self._load_metrics(set(names))
        # Another process may have created one of them a moment ago with another type.
        for index, batch in enumerate(self.batches):
            if not isinstance(outcomes[index], list):
                continue
            for position, event in enumerate(batch.events):
                fixed = self.metrics[event.metric_name].metric_type
                if fixed != event.metric_type:
                    reason = (
                        f"metric {event.metric_name!r} is a {fixed}; this event says "
                        f"{event.metric_type}"
                    )
                    outcomes[index] = ValidationFailed(
                        f"1 event(s) cannot be stored; nothing was stored: {reason}",
                        details=[
                            field_error("metric_type", reason, position)
                            | {"metric": event.metric_name}
                        ],
                    )
                    break

    async def _create_series(self, keys: list[SeriesKey]) -> None:
        if not keys:
            return
        keys = sorted(keys)
        ids = [self.metrics[name].id for name, _, _ in keys]
        tag_sets = [tags_json(tag_set) for _, _, tag_set in keys]
        await self.conn.execute(sql.query("ensure_series"), ids, tag_sets)
        await self._load_series(keys)
