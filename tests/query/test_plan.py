"""How a window splits between tiers (query/plan.py): whatever the window and the marks, the
parts cover the window as answered exactly once, and each part lies where its tier is
complete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from query.plan import DAY, HOUR, MINUTE, Marks, ceil, floor, plan

NOW = datetime(2026, 12, 1, 16, 37, 21, 123456, tzinfo=UTC)


def marks(hours_back: int, days_back: int, series_minutes_h: int) -> Marks:
    hours = floor(NOW, HOUR) - hours_back * HOUR
    days = min(floor(hours, DAY), floor(NOW, DAY) - days_back * DAY)
    series = min(floor(NOW - series_minutes_h * HOUR, MINUTE), hours)
    return Marks(hours, days, series, floor(NOW - 48 * HOUR, MINUTE), NOW)


def minutes_of(start: datetime, end: datetime) -> list[datetime]:
    found, moment = [], start
    while moment < end:
        found.append(moment)
        moment += MINUTE
    return found


@given(
    start_back=st.integers(min_value=0, max_value=40 * 24 * 60 * 60),
    length=st.integers(min_value=1, max_value=40 * 24 * 60 * 60),
    hours_back=st.integers(min_value=0, max_value=30),
    days_back=st.integers(min_value=0, max_value=3),
    series_minutes_h=st.integers(min_value=1, max_value=12),
    coarsest=st.sampled_from([MINUTE, HOUR, DAY]),
    kind=st.sampled_from(["series", "metric"]),
)
def test_the_parts_cover_the_answered_window_once_each_where_its_tier_is_complete(
    start_back: int,
    length: int,
    hours_back: int,
    days_back: int,
    series_minutes_h: int,
    coarsest: timedelta,
    kind: str,
) -> None:
    start = NOW - timedelta(seconds=start_back)
    end = start + timedelta(seconds=length)
    found = marks(hours_back, days_back, series_minutes_h)
    parts = plan(start, end, found, kind, coarsest)

    assert parts.start <= start and parts.end >= end
    assert parts.start == floor(parts.start, MINUTE) and parts.end == ceil(parts.end, MINUTE)
    covered: list[datetime] = []
    day_from, day_to = parts.days
    if day_from < day_to:
        assert coarsest == DAY and day_to <= found.days
        assert day_from == floor(day_from, DAY) and day_to == floor(day_to, DAY)
        covered += minutes_of(day_from, day_to)
    for hour in parts.hours:
        assert coarsest >= HOUR and hour + HOUR <= found.hours and hour == floor(hour, HOUR)
        covered += minutes_of(hour, hour + HOUR)
    assert len(parts.minutes) <= 2
    for first, last in parts.minutes:
        if coarsest >= HOUR:  # (a minute-only answer is checked against the horizon first)
            assert first >= found.minutes_from(kind)
        covered += minutes_of(first, last)
    assert sorted(covered) == minutes_of(parts.start, parts.end)


def test_a_window_of_the_last_day_reads_folded_hours_and_the_minutes_at_its_edges() -> None:
    found = marks(hours_back=0, days_back=0, series_minutes_h=6)
    parts = plan(NOW - DAY, NOW, found, "metric")

    assert parts.start == floor(NOW - DAY, MINUTE) and parts.end == ceil(NOW, MINUTE)
    assert len(parts.hours) == 23
    assert parts.minutes == [
        (parts.start, ceil(NOW - DAY, HOUR)),
        (floor(NOW, HOUR), parts.end),
    ]


def test_an_old_edge_past_the_minute_horizon_widens_to_its_whole_hour() -> None:
    found = marks(hours_back=0, days_back=0, series_minutes_h=6)
    start = NOW - timedelta(days=3)
    parts = plan(start, NOW, found, "series")

    assert parts.start == floor(start, HOUR)
    assert parts.minutes == [(floor(NOW, HOUR), parts.end)]
