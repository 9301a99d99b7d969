"""InfluxDB line protocol (POST /write, v1, and POST /api/v2/write) into metric events.

Each line is `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, parsed by
`line-protocol-parser` (a C parser of the InfluxDB grammar, escapes included). Every numeric
field of a line becomes one event of the gauge metric `<measurement>_<field>` with the line's
tags (`cpu,host=a usage_idle=12.5` is `cpu_usage_idle{host="a"}` = 12.5): line protocol says
nothing of counters or histograms, so a value is what was measured at its time.

- floats as given, integers (`3i`) and unsigned integers (`3u`) as floats (exact up to 2^53),
  booleans as 1 and 0; string fields are skipped (there is no number to keep): counted, and a
  line with nothing but strings stores nothing;
- the timestamp in the request's precision (ns by default; v1 also takes n, u, ms, s, m, h),
  kept to the microsecond; without one the server's clock is used;
- a line that does not parse, a name our metrics cannot take or a value that is not finite
  refuses the whole request, naming the line (nothing is stored, as for a JSON batch).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from line_protocol_parser import LineFormatError, parse_line

from core.errors import BadRequest, ValidationFailed, field_error
from ingest.wire import NAME_PATTERN, MetricEvent

# Nanoseconds per unit of each precision the two APIs name (v2: ns, us, ms, s).
PRECISIONS = {
    "ns": 1,
    "n": 1,
    "us": 1_000,
    "u": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_REPORTED = 100
_NAME = re.compile(NAME_PATTERN)
_encode = msgspec.json.encode


@dataclass
class Points:
    """The events of a body, with the line each came from (for errors found later)."""

    events: list[MetricEvent] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    skipped_strings: int = 0


def precision_of(raw: str | None) -> int:
    """Nanoseconds per timestamp unit, or 400 naming the parameter."""
    if raw is None or raw == "":
        return 1
    found = PRECISIONS.get(raw)
    if found is None:
        reason = f"one of {', '.join(PRECISIONS)}, not {raw!r}"
        raise BadRequest(f"precision: {reason}", details=[field_error("precision", reason)])
    return found


def _time(stamp: int, unit_ns: int) -> datetime:
    nanoseconds = stamp * unit_ns
    try:
        return EPOCH + timedelta(microseconds=nanoseconds // 1000)
    except OverflowError:
        # Past the years 1..9999: ingest refuses it as too far from now, like any other.
        return datetime.max.replace(tzinfo=UTC) if stamp > 0 else datetime.min.replace(tzinfo=UTC)


def decode(body: bytes, unit_ns: int) -> Points:
    """Every event of a line-protocol body, or a 400 naming each bad line (the first 100)."""
    points = Points()
    errors: list[dict[str, Any]] = []
    tag_texts: dict[tuple[tuple[str, str], ...], msgspec.Raw] = {}
    for number, raw_line in enumerate(body.split(b"\n"), start=1):
        line = raw_line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            point = parse_line(line)
        except (LineFormatError, UnicodeDecodeError, ValueError) as exc:
            errors.append(_line_error(number, str(exc).rstrip(".") or "does not parse"))
            continue
        if point is None:  # a comment
            continue
        measurement: str = point["measurement"]
        tags: dict[str, str] = point["tags"]
        key = tuple(sorted(tags.items()))
        tag_text = tag_texts.get(key)
        if tag_text is None:
            tag_text = tag_texts[key] = msgspec.Raw(_encode(dict(key)))
        stamp = point["time"]
        at = None if stamp is None else _time(stamp, unit_ns)
        for name, value in point["fields"].items():
            if value.__class__ is str:
                points.skipped_strings += 1
                continue
            metric = f"{measurement}_{name}"
            if not _NAME.match(metric):
                reason = (
                    f"the metric name {metric!r} (measurement_field) must start with a letter "
                    "or _ and hold only letters, digits and _ . : -"
                )
                errors.append(_line_error(number, reason))
                break
            number_value = float(value)  # bool: 1.0 / 0.0
            if not math.isfinite(number_value):
                errors.append(_line_error(number, f"field {name!r} is not a finite number"))
                break
            points.events.append(
                MetricEvent(
                    metric_name=metric,
                    value=number_value,
                    metric_type="gauge",
                    tags=tag_text,
                    timestamp=at,
                )
            )
            points.lines.append(number)
        if len(errors) >= MAX_REPORTED:
            break
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BadRequest(f"line {first['line']}: {first['reason']}{more}", details=errors)
    return points


def _line_error(number: int, reason: str) -> dict[str, Any]:
    return {"line": number, "field": "line", "reason": reason}


def by_line(refused: ValidationFailed, points: Points) -> BadRequest:
    """A refusal of the events (tags, limits, types) as line protocol states it: a 400
    naming the line of each refused event."""
    details = []
    for detail in refused.details:
        index = detail.get("index")
        named = {k: v for k, v in detail.items() if k != "index"}
        if isinstance(index, int) and 0 <= index < len(points.lines):
            named = {"line": points.lines[index], **named}
        details.append(named)
    if details and "line" in details[0]:
        first = details[0]
        message = f"line {first['line']}: {first['field']}: {first['reason']}"
    else:
        message = refused.message
    return BadRequest(message, details=details)
