"""Decoded events checked against the configured limits, into a `Batch` ready to write.

This runs on every event of every request, so it does per event only what must be per event
(the time, one tag-set lookup); names, tag sets and time bounds are checked per distinct value
or by min/max, and only an invalid batch is walked again to say which events are wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import PayloadTooLarge, field_error
from core.settings import IngestSettings
from ingest import offload
from ingest.distributions import Cumulative, Sketch
from ingest.tagsets import TagSets
from ingest.wire import MetricEvent, SeriesKey, refuse

MILLISECONDS_FROM = 1e11


@dataclass(frozen=True)
class Running:
    """A batch's events as received, and which of them are running totals of a counter (with
    the time each counts from, where the sender said): ingest/totals.py."""

    events: list[MetricEvent]
    times: list[datetime]
    keys: list[SeriesKey]
    totals: dict[int, datetime | None]  # event index -> start time
    # event index -> a cumulative histogram point, stored as its observations since the
    # series' previous one (a distribution)
    histograms: dict[int, Cumulative] = field(default_factory=dict)


@dataclass
class Batch:
    """Validated events with what the write path needs of each, computed once."""

    events: list[MetricEvent]
    times: list[datetime]
    keys: list[SeriesKey]
    earliest: datetime
    latest: datetime
    running: Running | None = None  # running totals among the events (ingest/totals.py)
    totals: list[float | None] | None = None  # per event, once `running` is applied
    kept: list[int] | None = None  # per event, its index as received, once `running` is applied
    # Events that are histogram points, by index as received: their observations, summarised
    # (ingest/distributions.py); stored as distribution rows, not raw values.
    distributions: dict[int, Sketch] | None = None

    def __len__(self) -> int:
        return len(self.events)

    def received(self) -> int:
        """Events as received: a running total already stored is answered as stored."""
        return len(self.running.events) if self.running is not None else len(self.events)


def from_epoch(stamp: float) -> datetime:
    """Seconds since the epoch, or milliseconds from 1e11 on; out of range saturates."""
    seconds = stamp / 1000 if abs(stamp) >= MILLISECONDS_FROM else stamp
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC) if seconds > 0 else datetime.min.replace(tzinfo=UTC)


def validate(
    events: list[MetricEvent], now: datetime, limits: IngestSettings, tagsets: TagSets
) -> Batch:
    """A Batch of `events`, or a 413/422 listing every invalid one (the first 100)."""
    if len(events) > limits.max_batch_events:
        raise PayloadTooLarge(
            f"The batch has {len(events)} events; the limit is {limits.max_batch_events}."
        )
    if not events:
        return Batch([], [], [], now, now)
    times, keys, problems = _check(events, now, limits, tagsets)
    if problems:
        errors: list[dict[str, Any]] = [
            field_error(field, reason, index)
            for index in sorted(problems)[:100]
            for field, reason in problems[index]
        ]
        raise refuse(errors, len(problems), len(events))
    return Batch(events, times, keys, min(times), max(times))


def validate_valid(
    events: list[MetricEvent], now: datetime, limits: IngestSettings, tagsets: TagSets
) -> tuple[Batch, dict[int, list[tuple[str, str]]]]:
    """The Batch of the valid ones among `events`, and what is wrong with each other one (by
    its index in `events`): for senders that drop a refused request whole (remote write)."""
    if not events:
        return Batch([], [], [], now, now), {}
    times, keys, problems = _check(events, now, limits, tagsets)
    if problems:
        kept = [i for i in range(len(events)) if i not in problems]
        events = [events[i] for i in kept]
        times = [times[i] for i in kept]
        keys = [keys[i] for i in kept]
    if not events:
        return Batch([], [], [], now, now), problems
    return Batch(events, times, keys, min(times), max(times)), problems


def _check(
    events: list[MetricEvent], now: datetime, limits: IngestSettings, tagsets: TagSets
) -> tuple[list[datetime], list[SeriesKey], dict[int, list[tuple[str, str]]]]:
    """Each event's time and series key, and the problems of the invalid ones by index."""
    problems: dict[int, list[tuple[str, str]]] = {}
    times: list[datetime] = []
    keys: list[SeriesKey] = []
    lookup = tagsets.lookup
    for index, event in enumerate(events):
        stamp = event.timestamp
        if stamp is None:
            times.append(now)
        elif stamp.__class__ is datetime:
            times.append(stamp)
        else:
            times.append(from_epoch(stamp))  # type: ignore[arg-type]
        tag_set = lookup(bytes(event.tags), event.source)
        if tag_set.__class__ is int:
            keys.append((event.metric_name, event.metric_type, tag_set))
        else:
            problems[index] = list(tag_set)  # type: ignore[arg-type]
            keys.append((event.metric_name, event.metric_type, -1))

    too_long = {e.metric_name for e in events if len(e.metric_name) > limits.max_name_length}
    if too_long:
        for index, event in enumerate(events):
            if event.metric_name in too_long:
                reason = f"longer than {limits.max_name_length} characters"
                problems.setdefault(index, []).insert(0, ("metric_name", reason))

    # PostgreSQL text cannot hold NUL: refused here rather than failing a whole group commit.
    if any("\x00" in unit for unit in {e.unit for e in events} if unit):
        for index, event in enumerate(events):
            if event.unit and "\x00" in event.unit:
                problems.setdefault(index, []).append(("unit", "contains a NUL character"))

    earliest, latest = min(times), max(times)
    newest_allowed = now + timedelta(seconds=limits.max_future_s)
    oldest_allowed = now - timedelta(days=limits.retention_days)
    if latest > newest_allowed or earliest < oldest_allowed:
        ahead = f"more than {limits.max_future_s} s ahead of the server's clock"
        old = f"older than the retention of {limits.retention_days} days"
        for index, when in enumerate(times):
            if when > newest_allowed:
                problems.setdefault(index, []).append(("timestamp", ahead))
            elif when < oldest_allowed:
                problems.setdefault(index, []).append(("timestamp", old))

    return times, keys, problems


async def validated(events: list[MetricEvent], limits: IngestSettings, tagsets: TagSets) -> Batch:
    """validate(`events`) as of now, on the ingest thread for a large group (ingest/offload.py)."""
    return await offload.run(
        len(events) >= offload.EVENTS, validate, events, datetime.now(UTC), limits, tagsets
    )
