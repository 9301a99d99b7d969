"""How a time window splits between the daily, hourly and minute tiers and the pending deltas.

The tiers (sql/migrations/0015_rollup_tiers.sql) are complete where their watermarks say:
days below the daily mark, hours below the hourly mark, minutes from the minute tier's horizon
on (or from the hourly mark, if earlier). A window, snapped to whole minutes, is read as:

- whole days below the daily mark from the daily tier (when the answer's buckets are days);
- the other whole hours below the hourly mark from the hourly tier (when buckets are hours);
- what is left (the partial hours at the edges, the hours not folded yet) from the minute tier;
  an edge older than the minute tier's horizon widens to its whole hour instead;
- plus every delta still pending in the window, whatever its minute (one statement reads the
  tiers and the deltas, so a delta is counted once: pending, or compacted).

The parts never overlap and together cover the window as answered (`start`, `end`). The cost
is a function of the window and of the series read, never of how many events arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def floor(moment: datetime, width: timedelta) -> datetime:
    return EPOCH + ((moment - EPOCH) // width) * width


def ceil(moment: datetime, width: timedelta) -> datetime:
    return EPOCH - ((EPOCH - moment) // width) * width


@dataclass(frozen=True)
class Marks:
    """_analytics.tier_watermarks as one query read them, with the database's clock."""

    hours: datetime  # hours below are in the hourly tiers
    days: datetime  # days below are in the daily tiers
    series_minutes: datetime  # the per-series minute tier holds every minute from here on
    metric_minutes: datetime  # the per-metric one likewise
    now: datetime

    def minutes_from(self, kind: str) -> datetime:
        horizon = self.series_minutes if kind == "series" else self.metric_minutes
        return min(horizon, self.hours)  # an hour not folded yet keeps all of its minutes


@dataclass(frozen=True)
class Plan:
    start: datetime  # the window as answered: whole minutes, or whole hours at an old edge
    end: datetime
    days: tuple[datetime, datetime]  # [from, to) from the daily tier (empty when equal)
    hours: list[datetime]  # from the hourly tier
    minutes: list[tuple[datetime, datetime]]  # at most two ranges, from the minute tier

    def arguments(self, owners: list[int], groups: list[str | None]) -> tuple[object, ...]:
        """$1..$11 of statistics_tiers and timeseries_tiers."""
        (first_from, first_to), (second_from, second_to) = (
            *self.minutes,
            *[(self.end, self.end)] * (2 - len(self.minutes)),
        )
        return (
            owners,
            groups,
            self.start,
            self.end,
            *self.days,
            self.hours,
            first_from,
            first_to,
            second_from,
            second_to,
        )


def covered_by_minutes(start: datetime, end: datetime, marks: Marks, kind: str) -> bool:
    """Whether the minute tier alone answers [start, end) (a time series of minute buckets)."""
    return floor(start, MINUTE) >= marks.minutes_from(kind) and start < end


def plan(
    start: datetime, end: datetime, marks: Marks, kind: str, coarsest: timedelta = DAY
) -> Plan:
    """The parts of [start, end) for a `kind` of tier ('series' or 'metric'); `coarsest` is
    the widest tier row the answer's buckets can take whole (a day, an hour, a minute)."""
    first, last = floor(start, MINUTE), ceil(end, MINUTE)
    minutes_from = marks.minutes_from(kind)
    if coarsest >= HOUR:
        # An edge hour reaching below the minute tier's horizon is read whole, from the
        # hourly tier (folded: the horizon is never above the hourly mark).
        if first < minutes_from:
            first = floor(first, HOUR)
        if floor(last, HOUR) < minutes_from:
            last = ceil(last, HOUR)
    hour_from, hour_to = ceil(first, HOUR), min(floor(last, HOUR), marks.hours)
    if coarsest < HOUR or hour_from >= hour_to:
        return Plan(first, last, (last, last), [], [(first, last)] if first < last else [])
    day_from, day_to = last, last
    if coarsest >= DAY:
        day_from, day_to = ceil(hour_from, DAY), min(floor(hour_to, DAY), marks.days)
        if day_from >= day_to:
            day_from, day_to = last, last
    hours = []
    hour = hour_from
    while hour < hour_to:
        if hour >= day_to or hour < day_from:
            hours.append(hour)
            hour += HOUR
        else:
            hour = day_to
    minutes = [(a, b) for a, b in ((first, hour_from), (hour_to, last)) if a < b]
    return Plan(first, last, (day_from, day_to), hours, minutes)
