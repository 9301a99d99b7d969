"""How a time window splits between raw events, hourly rollups and daily rollups.

Whole days inside the window with no stale hour come from the daily rollups; the other whole
hours from the hourly rollups, except stale hours (listed in the invalidation log, so not yet
exact in the rollups); the partial hours at the window's edges and the stale hours from raw
events. The parts never overlap and together cover the window exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def floor(moment: datetime, width: timedelta) -> datetime:
    return EPOCH + ((moment - EPOCH) // width) * width


def ceil(moment: datetime, width: timedelta) -> datetime:
    return EPOCH - ((EPOCH - moment) // width) * width


@dataclass(frozen=True)
class Plan:
    start: datetime
    end: datetime
    first_hour: datetime  # whole hours are [first_hour, last_hour); the rest is raw
    last_hour: datetime
    stale: list[datetime]  # hours inside [first_hour, last_hour) read from raw
    days: list[datetime]  # days read from the daily rollups

    def arguments(
        self, ids: list[int], groups: list[str | None], whole_metric: int | None
    ) -> tuple[object, ...]:
        """$1..$12 of statistics_merged and timeseries_merged."""
        return (
            ids,
            self.start,
            self.end,
            self.first_hour,
            self.last_hour,
            self.stale,
            self.days,
            groups,
            whole_metric,
            *self.stale_span,
            self.hours,
        )

    @property
    def hours(self) -> list[datetime]:
        """Whole hours read from the hourly rollups: not stale, not in a day read whole."""
        skip = set(self.stale)
        days = set(self.days)
        found = []
        hour = self.first_hour
        while hour < self.last_hour:
            if hour not in skip and floor(hour, DAY) not in days:
                found.append(hour)
            hour += HOUR
        return found

    @property
    def stale_span(self) -> tuple[datetime, datetime]:
        """The range the stale hours lie in (empty when there are none)."""
        if not self.stale:
            return self.end, self.end
        return self.stale[0], self.stale[-1] + HOUR


def plan(start: datetime, end: datetime, stale_hours: Iterable[datetime]) -> Plan:
    first_hour, last_hour = ceil(start, HOUR), floor(end, HOUR)
    if first_hour >= last_hour:  # no whole hour: all of it from raw
        return Plan(start, end, end, end, [], [])
    stale = sorted(h for h in set(stale_hours) if first_hour <= h < last_hour)
    stale_days = {floor(h, DAY) for h in stale}
    days = []
    day = ceil(first_hour, DAY)
    while day + DAY <= last_hour:
        if day not in stale_days:
            days.append(day)
        day += DAY
    return Plan(start, end, first_hour, last_hour, stale, days)
