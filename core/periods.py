"""UTC calendar periods: `hour`, `day`, `week` (ISO: Monday 00:00 UTC) and `month` (the 1st).

The same boundaries as analytics.period_start / period_end in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

PERIODS = ("hour", "day", "week", "month")


def period_bounds(period_type: str, moment: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar period of `period_type` that contains `moment`."""
    moment = moment.astimezone(UTC)
    if period_type == "hour":
        start = moment.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period_type == "day":
        return day, day + timedelta(days=1)
    if period_type == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(weeks=1)
    if period_type != "month":
        raise ValueError(f"unknown period type {period_type!r}")
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following


def previous_start(period_type: str, start: datetime) -> datetime:
    """Where the period before the one starting at `start` begins."""
    return period_bounds(period_type, start - timedelta(microseconds=1))[0]


def spanning(period_type: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Every period of `period_type` that overlaps [start, end), oldest first."""
    found = [period_bounds(period_type, start)]
    while found[-1][1] < end:
        found.append(period_bounds(period_type, found[-1][1]))
    return found
