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
- names are made ones our metrics and tags can take: any other character becomes `_`, and a
  name that would start with a digit gets a leading `_` (`my cpu,1m=x` is `my_cpu_...`, tag
  `_1m`); a UTF-8 byte order mark is dropped; a field given twice in a line keeps its first
  value (InfluxDB keeps the last);
- a line that does not parse or a value that is not finite refuses the whole request, naming
  the line (nothing is stored, as for a JSON batch); so do the events our validation refuses
  (tag values, timestamps, a metric of another type), by line where they have one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from line_protocol_parser import LineFormatError, parse_line

from core.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    ValidationFailed,
    field_error,
)
from ingest.tagsets import TAG_KEY
from ingest.wire import MetricEvent, from_nanoseconds, named

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
MAX_REPORTED = 100
_encode = msgspec.json.encode


@dataclass
class Points:
    """The events of a body, with the line each came from (for errors found later)."""

    events: list[MetricEvent] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    skipped_strings: int = 0
    timestamped: bool = True  # every line has its timestamp: a retry is the same points


def precision_of(raw: str | None) -> int:
    """Nanoseconds per timestamp unit, or 400 naming the parameter."""
    if raw is None or raw == "":
        return 1
    found = PRECISIONS.get(raw)
    if found is None:
        reason = f"one of {', '.join(PRECISIONS)}, not {raw!r}"
        raise BadRequest(f"precision: {reason}", details=[field_error("precision", reason)])
    return found


def lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a body: split at newlines, but not inside a quoted string field
    value (InfluxDB keeps `msg="a\nb"` one line, and clients send it so)."""
    pieces = body.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # a UTF-8 byte order mark
    start, inside = 0, False
    for number, piece in enumerate(pieces, start=1):
        # Unescaped quotes, piece by piece (an escape never spans a newline): one pass in all.
        inside ^= (piece.count(b'"') - piece.count(b'\\"')) % 2 == 1
        if inside and number < len(pieces):
            continue  # inside a string: the newline is part of it
        yield start + 1, b"\n".join(pieces[start:number])
        start, inside = number, False


def decode(body: bytes, unit_ns: int, most_events: int) -> Points:
    """Every event of a line-protocol body, or a 400 naming each bad line (the first 100, and
    how many there are), or a 413 once past `most_events`."""
    points = Points()
    errors: list[dict[str, Any]] = []
    bad = 0
    tag_texts: dict[tuple[tuple[str, str], ...], msgspec.Raw] = {}
    for number, raw_line in lines(body):
        line = raw_line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            point = parse_line(line)
        except (LineFormatError, UnicodeDecodeError, ValueError) as exc:
            bad += 1
            if len(errors) < MAX_REPORTED:
                errors.append(_line_error(number, str(exc).rstrip(".") or "does not parse"))
            continue
        if point is None:  # a comment
            continue
        measurement: str = point["measurement"]
        tags: dict[str, str] = {named(k, TAG_KEY): v for k, v in point["tags"].items()}
        key = tuple(sorted(tags.items()))
        tag_text = tag_texts.get(key)
        if tag_text is None:
            tag_text = tag_texts[key] = msgspec.Raw(_encode(dict(key)))
        stamp = point["time"]
        if stamp is None:
            points.timestamped = False
        at = None if stamp is None else from_nanoseconds(stamp * unit_ns)
        for name, value in point["fields"].items():
            if value.__class__ is str:
                points.skipped_strings += 1
                continue
            metric = named(f"{measurement}_{name}")
            try:
                number_value = float(value)  # bool: 1.0 / 0.0
            except OverflowError:
                number_value = math.inf
            if not math.isfinite(number_value):
                bad += 1
                if len(errors) < MAX_REPORTED:
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
        if len(points.events) > most_events:
            raise PayloadTooLarge(
                f"The body has more than {most_events} values (lines times numeric fields), the "
                "limit of a batch (INGEST_MAX_BATCH_EVENTS): send fewer lines per request."
            )
    if errors:
        first = errors[0]
        more = f" (and {bad - 1} more)" if bad > 1 else ""
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


class V1Error(ApiError):
    """An error of POST /write as InfluxDB 1.x states it: the sentence in `error` (the field
    Telegraf and the 1.x clients log), then our `message` and `details` as everywhere."""

    def __init__(self, refused: ApiError) -> None:
        super().__init__(refused.message, details=refused.details, headers=refused.headers)
        self.status = refused.status  # type: ignore[misc]  # this error, that status
        self.code = refused.code  # type: ignore[misc]

    def body(self) -> dict[str, Any]:
        return {**super().body(), "error": self.message}
