"""Metric events on the wire: one msgspec Struct, decoded and validated once, at the edge.

Timestamps are RFC 3339 strings with an offset (``2024-10-30T12:00:00Z``) or numbers of seconds
since the Unix epoch; numbers of 1e11 or more are read as milliseconds (1e11 seconds is in the
year 5138, 1e11 milliseconds in 1973). Without a timestamp the server's clock is used.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from service.errors import BadRequest, ValidationFailed, field_error

MAX_NAME_LENGTH = 200
MAX_TAGS = 32
MAX_TAG_KEY_LENGTH = 100
MAX_TAG_VALUE_LENGTH = 256
MILLISECONDS_FROM = 1e11

MetricType = Literal["counter", "gauge", "histogram", "timer"]
# No `/`: the name is one segment of /api/v1/analytics/metrics/{name}/statistics.
MetricName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
        description="Letters, digits and _ . : -, starting with a letter or _",
    ),
]
TagKey = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_TAG_KEY_LENGTH,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]*$",
    ),
]
TagValue = Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE_LENGTH)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)] | float


class MetricEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    metric_name: MetricName
    value: float
    metric_type: MetricType
    unit: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    tags: Annotated[dict[TagKey, TagValue], msgspec.Meta(max_length=MAX_TAGS)] = {}
    source: TagValue | None = None
    timestamp: Timestamp | None = None

    def series_tags(self) -> dict[str, str]:
        """The tags that identify the series: `source`, when given, is the tag `source`."""
        if self.source is None:
            return self.tags
        return {**self.tags, "source": self.source}

    def time(self, now: datetime) -> datetime:
        if self.timestamp is None:
            return now
        if isinstance(self.timestamp, datetime):
            return self.timestamp
        seconds = (
            self.timestamp / 1000 if abs(self.timestamp) >= MILLISECONDS_FROM else (self.timestamp)
        )
        return datetime.fromtimestamp(seconds, UTC)


_record_decoder = msgspec.json.Decoder(MetricEvent)
_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"(?:required|unknown) field `([^`]+)`")


def describe(error: msgspec.ValidationError) -> dict[str, Any]:
    """A msgspec validation error as {index?, field, reason}: `$[3].tags.x` -> 3, 'tags.x'."""
    match = _PATH.match(str(error))
    assert match is not None  # the pattern matches any string
    reason, path = match.group("reason"), match.group("path") or ""
    index = None
    leading = re.match(r"^\[(\d+)\]", path)
    if leading:
        index = int(leading.group(1))
        path = path[leading.end() :]
    field = path.replace("[...]", "").lstrip(".")
    if reason == "Number out of range":
        reason = "must be a finite number (at most 1.8e308 in magnitude)"
    named = _NAMED_FIELD.search(reason)
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    return field_error(field or "body", reason, index)


def decode_record(body: bytes) -> MetricEvent:
    """One event from a JSON body, or the 400/422 that says what is wrong with it."""
    try:
        event = _record_decoder.decode(body)
    except msgspec.ValidationError as exc:
        detail = describe(exc)
        raise ValidationFailed(f"{detail['field']}: {detail['reason']}", details=[detail]) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    if event.source is not None and event.tags.get("source", event.source) != event.source:
        detail = field_error("source", "differs from the tag `source`; give one or the other")
        raise ValidationFailed(f"source: {detail['reason']}", details=[detail])
    if len(event.series_tags()) > MAX_TAGS:
        detail = field_error("tags", f"more than {MAX_TAGS} tags, counting `source`")
        raise ValidationFailed(f"tags: {detail['reason']}", details=[detail])
    return event
