"""Query-string parameters, parsed into typed values or refused with a 400 naming the parameter."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.datastructures import QueryParams

from core.errors import BadRequest, field_error

MAX_HOURS = 24 * 366 * 10


def bad(parameter: str, reason: str) -> BadRequest:
    return BadRequest(f"{parameter}: {reason}", details=[field_error(parameter, reason)])


def timestamp(params: QueryParams, name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise bad(name, "expected an RFC 3339 timestamp such as 2024-10-30T12:00:00Z") from None
    if value.tzinfo is None:
        raise bad(name, "the timestamp needs a UTC offset, such as Z or +02:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise bad(name, "the timestamp is out of range") from None


def number(params: QueryParams, name: str, default: float, low: float, high: float) -> float:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad(name, "expected a number") from None
    if not math.isfinite(value) or not low < value <= high:
        raise bad(name, f"expected a number above {low:g} and at most {high:g}")
    return value


def whole_number(params: QueryParams, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise bad(name, f"expected a whole number from {low} to {high}")
    return int(raw)


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end)."""

    start: datetime
    end: datetime


def window(params: QueryParams, now: datetime, default_hours: float = 24) -> Window:
    """`hours` back from now, or `start`/`end` (end defaults to now); not both."""
    start, end = timestamp(params, "start"), timestamp(params, "end")
    if "hours" in params and (start or end):
        raise bad("hours", "give either hours or start/end, not both")
    if start is None:
        if end is not None:
            raise bad("start", "end needs a start")
        hours = number(params, "hours", default_hours, 0, MAX_HOURS)
        return Window(now - timedelta(hours=hours), now)
    end = end or now
    if end <= start:
        raise bad("end", "end must be later than start")
    return Window(start, end)


def flag(params: QueryParams, name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise bad(name, "expected true or false")
    return raw in ("true", "1")


def tag_filters(params: QueryParams) -> dict[str, list[str]]:
    """`tag.<key>=<value>`, repeatable: every key named must match one of its values."""
    filters: dict[str, list[str]] = {}
    for name, value in params.multi_items():
        if not name.startswith("tag."):
            continue
        key = name.removeprefix("tag.")
        if not key or len(key) > 200:
            raise bad(name, "expected tag.<key>=<value> with a key of 1 to 200 characters")
        filters.setdefault(key, []).append(value)
    return filters


def group_by(params: QueryParams) -> str | None:
    key = params.get("group_by")
    if key is not None and not 0 < len(key) <= 200:
        raise bad("group_by", "expected a tag key of 1 to 200 characters")
    return key


@dataclass(frozen=True)
class Interval:
    """A time-series bucket width: SQL text, its length, and the rollup it can be built from."""

    text: str  # for PostgreSQL: '5 minutes', '1 month'
    approx: timedelta  # a month counts as 31 days, for the bucket-count limit
    resolution: str  # the widest tier row a bucket takes whole: '1m', '1h' or '1d'


_INTERVAL = re.compile(
    r"^(\d{1,4})\s*(m|min|mins|minute|minutes|h|hour|hours|d|day|days|w|week|weeks"
    r"|mo|month|months)$"
)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def interval(params: QueryParams, default: str = "1h") -> Interval:
    raw = params.get("interval", default).strip().lower()
    match = _INTERVAL.match(raw)
    if not match:
        raise bad("interval", "expected a width such as 1m, 5m, 1h, 6h, 1d, 1w or 1mo")
    count, unit = int(match.group(1)), match.group(2)
    if unit.startswith("mo"):
        if count != 1:
            raise bad("interval", "the widest interval is 1 month")
        return Interval("1 month", timedelta(days=31), "1d")
    name = _UNITS[unit[0]]
    width = timedelta(**{name: count})
    if width < timedelta(minutes=1) or width > timedelta(days=31):
        raise bad("interval", "expected from 1 minute to 1 month")
    if width % timedelta(days=1) == timedelta(0):
        resolution = "1d"
    elif width % timedelta(hours=1) == timedelta(0):
        resolution = "1h"
    else:
        resolution = "1m"
    return Interval(f"{count} {name}", width, resolution)


AGGREGATIONS = ("avg", "sum", "min", "max", "count", "p50", "p95", "p99", "rate")


def aggregation(params: QueryParams) -> str:
    agg = params.get("agg", "avg")
    if agg not in AGGREGATIONS:
        raise bad("agg", f"expected one of {', '.join(AGGREGATIONS)}")
    return agg
