"""Metric events on the wire: decoded and validated once, at the edge, into a `Batch`.

Bodies: one JSON event (``/record``), or for ``/batch`` a JSON array of events, an object
``{"events": [...]}``, or one JSON event per line (``application/x-ndjson``); any of them may be
sent with ``Content-Encoding: gzip``.

Timestamps are RFC 3339 strings with an offset (``2024-10-30T12:00:00Z``) or numbers of seconds
since the Unix epoch; numbers of 1e11 or more are read as milliseconds (1e11 seconds is in the
year 5138, 1e11 milliseconds in 1973). Without a timestamp the server's clock is used.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from core.errors import BadRequest, ValidationFailed
from core.http import describe

MAX_REPORTED_ERRORS = 100
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]*$"

MetricType = Literal["counter", "gauge", "histogram", "timer"]
# No `/` in names: the name is one segment of /api/v1/analytics/metrics/{name}/statistics.
# Lengths are checked in `check` against the configured limits.
MetricName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        pattern=NAME_PATTERN,
        description="Letters, digits and _ . : -, starting with a letter or _",
    ),
]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)] | float

# (metric name, metric type, tag-set id). The type is part of the key so that an event of the
# wrong type never finds a cached series: it goes the slow way, where it is refused.
SeriesKey = tuple[str, str, int]


NO_TAGS = msgspec.Raw(b"{}")
NAME = re.compile(NAME_PATTERN)
_UNNAMED = re.compile(r"[^A-Za-z0-9_.:/-]")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_nanoseconds(nanoseconds: int) -> datetime:
    """A protocol's integer time (nanoseconds since the epoch), to the microsecond; past the
    years 1..9999 it saturates, and validation refuses it as too far from now like any other."""
    try:
        return EPOCH + timedelta(microseconds=nanoseconds // 1000)
    except OverflowError:
        return (
            datetime.max.replace(tzinfo=UTC)
            if nanoseconds > 0
            else datetime.min.replace(tzinfo=UTC)
        )


def named(text: str, pattern: re.Pattern[str] = NAME) -> str:
    """A name our metrics (or, with tagsets.TAG_KEY, tags) can take, for protocols whose names
    are not ours: each other character `_`, and a leading `_` where it would start with a digit
    or `-.:/` (`my cpu` is `my_cpu`, `1m` is `_1m`)."""
    if pattern.match(text):
        return text
    cleaned = _UNNAMED.sub("_", text)
    return cleaned if pattern.match(cleaned) else f"_{cleaned}"


# gc=False: events hold no references that could form cycles; skipping the collector's
# tracking makes decoding 100,000 of them noticeably cheaper.
class MetricEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    metric_name: MetricName
    value: float
    metric_type: MetricType
    unit: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    # Raw JSON text: parsed and checked once per distinct text (ingest/tagsets.py). A factory,
    # not a default: msgspec's JSON Schema (service/openapi.py) cannot encode a Raw default.
    tags: msgspec.Raw = msgspec.field(default_factory=lambda: NO_TAGS)
    source: str | None = None
    timestamp: Timestamp | None = None


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    events: list[MetricEvent]


class RawEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


_event = msgspec.json.Decoder(MetricEvent)
_events = msgspec.json.Decoder(list[MetricEvent])
_envelope = msgspec.json.Decoder(Envelope)
_raw_items = msgspec.json.Decoder(list[msgspec.Raw])
_raw_envelope = msgspec.json.Decoder(RawEnvelope)


def _item_errors(items: list[msgspec.Raw]) -> tuple[list[MetricEvent], list[dict[str, Any]], int]:
    """Decode items one by one, so that every invalid one is reported, not just the first."""
    events: list[MetricEvent] = []
    errors: list[dict[str, Any]] = []
    invalid = 0
    for index, item in enumerate(items):
        try:
            events.append(_event.decode(item))
        except msgspec.ValidationError as exc:
            invalid += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(describe(exc, index))
    return events, errors, invalid


def refuse(errors: list[dict[str, Any]], invalid: int, total: int) -> ValidationFailed:
    """The 422 for a batch with `invalid` bad events out of `total`, listing the first 100."""
    if not errors:
        return ValidationFailed("The batch is not a list of valid events.")
    listed = (
        f" (the first {MAX_REPORTED_ERRORS} are listed)" if invalid > MAX_REPORTED_ERRORS else ""
    )
    return ValidationFailed(
        f"{invalid} of {total} events are invalid; nothing was stored{listed}",
        details=errors[:MAX_REPORTED_ERRORS],
    )


def _malformed(exc: msgspec.DecodeError, where: str = "") -> BadRequest:
    return BadRequest(f"The body is not valid JSON{where}: {exc}")


def decode_record(body: bytes) -> list[MetricEvent]:
    """One event from a JSON object body."""
    try:
        return [_event.decode(body)]
    except msgspec.ValidationError as exc:
        detail = describe(exc)
        raise ValidationFailed(f"{detail['field']}: {detail['reason']}", details=[detail]) from None
    except msgspec.DecodeError as exc:
        raise _malformed(exc) from None


def decode_json_batch(body: bytes) -> list[MetricEvent]:
    """Events from a JSON array or an {"events": [...]} object."""
    is_envelope = body.lstrip()[:1] == b"{"
    try:
        return _envelope.decode(body).events if is_envelope else _events.decode(body)
    except msgspec.ValidationError:
        pass  # decode again item by item, below, to report every invalid item
    except msgspec.DecodeError as exc:
        raise _malformed(exc) from None
    try:
        items = _raw_envelope.decode(body).events if is_envelope else _raw_items.decode(body)
    except msgspec.ValidationError as exc:
        detail = describe(exc)
        raise ValidationFailed(
            'Send a JSON array of events or an object {"events": [...]}', details=[detail]
        ) from None
    except msgspec.DecodeError as exc:  # malformed further on than the first invalid item
        raise _malformed(exc) from None
    _, errors, invalid = _item_errors(items)
    raise refuse(errors, invalid, len(items))


def decode_ndjson(body: bytes) -> list[MetricEvent]:
    """Events from one JSON object per line; blank lines are skipped."""
    events: list[MetricEvent] = []
    errors: list[dict[str, Any]] = []
    invalid = 0
    index = 0
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            events.append(_event.decode(line))
        except msgspec.ValidationError as exc:
            invalid += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(describe(exc, index))
        except msgspec.DecodeError as exc:
            raise _malformed(exc, f" on line {number}") from None
        index += 1
    if errors:
        raise refuse(errors, invalid, index)
    return events
