"""OTLP/HTTP metrics (POST /v1/metrics and /otlp/v1/metrics) into metric events.

The body is an `ExportMetricsServiceRequest` (the `opentelemetry-proto` package's messages),
as protobuf (`application/x-protobuf`) or as OTLP's JSON (`application/json`: lowerCamelCase
keys, 64-bit integers as strings, read by protobuf's own JSON mapping), gzip or not. The answer
is an `ExportMetricsServiceResponse` in the request's content type.

- A metric's name is ours (made one where it cannot be: wire.named), its unit its unit, its
  description its description.
- Tags: the resource's attributes, then the scope's, then the point's (a later one wins);
  `service.name` is the event's `source`, not a tag. Values are their text (arrays and maps as
  JSON).
- Gauge points are gauges. Sum points: delta ones are counter increments as they come (a
  non-monotonic delta sum, an UpDownCounter's, may be negative); cumulative monotonic ones are
  running totals since `start_time_unix_nano` (ingest/totals.py: a new start time is a
  restart; the same point exported again adds nothing); cumulative non-monotonic ones are the
  current value of an UpDownCounter: gauges.
- Points flagged "no recorded value", and a time of 0, are not values: skipped and counted.
- A Summary point is what Prometheus makes of one: `<name>_count` and `<name>_sum` as
  running totals since its start time, each quantile the gauge `<name>` with the tag
  `quantile`.
- Histogram and ExponentialHistogram points are distributions (ingest/distributions.py): a
  delta one as sent, a cumulative one as what it adds to the series' previous point (at
  commit, ingest/totals.py).
- Points our limits refuse (NaN, too old, a
  tag too long, a metric at its series limit): OTLP's partial success, a 200 that says how many
  were rejected and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as service
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from core.errors import ApiError, BadRequest, UnsupportedMediaType
from ingest import distributions
from ingest.samples import Family, Samples
from ingest.tagsets import TAG_KEY
from ingest.wire import MetricEvent, MetricType, from_nanoseconds, named

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
SOURCE = "service.name"
_encode = msgspec.json.encode

# google.rpc.Code of each status an error answer can have (OTLP's error body is a Status).
CODES = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 11, 415: 3, 429: 8, 500: 13, 503: 14}


# (tags, source) -> the tags as JSON text, and as error messages show them (with the source)
TagTexts = dict[tuple[tuple[tuple[str, str], ...], str | None], tuple[msgspec.Raw, str]]


@dataclass
class Decoded(Samples):
    skipped: int = 0  # points with no recorded value


def media_of(content_type: str | None) -> str:
    """PROTOBUF or JSON, or 415."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(
            f"Content-Type: {PROTOBUF} or {JSON} (OTLP/HTTP), not {content_type or 'none'!r}"
        )
    return media


def parse(body: bytes, media: str) -> service.ExportMetricsServiceRequest:
    request = service.ExportMetricsServiceRequest()
    try:
        if media == PROTOBUF:
            request.ParseFromString(body)
        else:
            json_format.Parse(body, request, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        kind = "protobuf" if media == PROTOBUF else "OTLP JSON"
        raise BadRequest(
            f"The body is not a valid {kind} ExportMetricsServiceRequest: {exc}"
        ) from None
    return request


def answer(media: str, rejected: int, message: str) -> bytes:
    """The ExportMetricsServiceResponse, with partial_success where something was rejected."""
    response = service.ExportMetricsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = message
    if media == PROTOBUF:
        return bytes(response.SerializeToString())
    return str(json_format.MessageToJson(response, indent=None)).encode()


def status(media: str, refused: ApiError) -> bytes:
    """An error answer's body: a google.rpc.Status, in the request's content type."""
    message = status_pb2.Status(code=CODES.get(refused.status, 2), message=refused.message)
    if media == PROTOBUF:
        return bytes(message.SerializeToString())
    return str(json_format.MessageToJson(message, indent=None)).encode()


def _text(value: common_pb2.AnyValue) -> str | None:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return _encode(json_format.MessageToDict(value)).decode()


def _attributes(pairs: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        text = _text(pair.value)
        if text is not None and text != "":
            found[pair.key] = text
    return found


def events(request: service.ExportMetricsServiceRequest) -> Decoded:
    """Every storable point of `request` as an event; the others refused or skipped."""
    decoded = Decoded()
    tag_texts: TagTexts = {}
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            scoped = {**resource, **_attributes(scope_metrics.scope.attributes)}
            for metric in scope_metrics.metrics:
                name = named(metric.name) if metric.name else ""
                kind = metric.WhichOneof("data")
                if not name or kind is None:
                    points = _point_count(metric)
                    decoded.refuse(
                        metric.name or "(no name)", "a metric needs a name and data", max(points, 1)
                    )
                    continue
                unit = metric.unit[:32] or None
                if metric.unit or metric.description:
                    decoded.families[name] = Family(0, metric.description, metric.unit)
                if kind == "summary":
                    for summary in metric.summary.data_points:
                        _summary(decoded, tag_texts, scoped, name, unit, summary)
                    continue
                if kind in ("histogram", "exponential_histogram"):
                    data = getattr(metric, kind)
                    if data.aggregation_temporality not in (DELTA, CUMULATIVE):
                        decoded.refuse(
                            name,
                            "a histogram needs its aggregation_temporality (delta or cumulative)",
                            len(data.data_points),
                        )
                        continue
                    for one in data.data_points:
                        _histogram(
                            decoded,
                            tag_texts,
                            scoped,
                            name,
                            unit,
                            one,
                            kind == "exponential_histogram",
                            data.aggregation_temporality == CUMULATIVE,
                        )
                    continue
                metric_type: MetricType = "gauge"
                running = False
                if kind == "sum":
                    temporality = metric.sum.aggregation_temporality
                    if temporality == DELTA:
                        metric_type = "counter"
                    elif temporality == CUMULATIVE and metric.sum.is_monotonic:
                        metric_type, running = "counter", True
                    elif temporality != CUMULATIVE:
                        decoded.refuse(
                            name,
                            "a sum needs its aggregation_temporality (delta or cumulative)",
                            len(metric.sum.data_points),
                        )
                        continue
                for point in getattr(metric, kind).data_points:
                    _point(decoded, tag_texts, scoped, name, unit, metric_type, running, point)
    return decoded


def _point_count(metric: metrics_pb2.Metric) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def _series(
    tag_texts: TagTexts,
    scoped: dict[str, str],
    name: str,
    pairs: Any,
) -> tuple[msgspec.Raw, str | None, str]:
    """A point's tags (as JSON text), source, and its series as errors name it."""
    attributes = {**scoped, **_attributes(pairs)}
    source = attributes.pop(SOURCE, None)
    tags = {named(k, TAG_KEY): v for k, v in attributes.items()}
    key = (tuple(sorted(tags.items())), source)
    found = tag_texts.get(key)
    if found is None:
        shown = dict(sorted({**tags, "source": source}.items())) if source else dict(key[0])
        found = tag_texts[key] = (msgspec.Raw(_encode(dict(key[0]))), _encode(shown).decode())
    return found[0], source, f"{name}{found[1]}"


def _histogram(
    decoded: Decoded,
    tag_texts: TagTexts,
    scoped: dict[str, str],
    name: str,
    unit: str | None,
    point: Any,
    exponential: bool,
    cumulative: bool,
) -> None:
    """A histogram point (explicit or exponential) as a distribution: a delta one as sent, a
    cumulative one as what it adds to the series' previous point (at commit: ingest/totals.py)."""
    tag_text, source, where = _series(tag_texts, scoped, name, point.attributes)
    if point.flags & NO_RECORDED_VALUE or not point.time_unix_nano:
        decoded.skipped += 1
        return
    at = f"point at {point.time_unix_nano} ns"
    if exponential and not -10 <= point.scale <= 20:
        decoded.refuse(where, f"{at}: scale {point.scale} is outside -10..20")
        return
    if not cumulative and point.count > distributions.MOST_COUNT:
        decoded.refuse(where, f"{at}: more than {distributions.MOST_COUNT} observations")
        return
    figures = [point.sum if point.HasField("sum") else None]
    figures += [point.min if point.HasField("min") else None]
    figures += [point.max if point.HasField("max") else None]
    if any(f is not None and not math.isfinite(f) for f in figures):
        decoded.refuse(where, f"{at}: its sum, min and max must be finite numbers")
        return
    if exponential:
        buckets = distributions.exponential(
            point.scale,
            point.zero_count,
            point.zero_threshold,
            (point.positive.offset, point.positive.bucket_counts),
            (point.negative.offset, point.negative.bucket_counts),
        )
    else:
        if len(point.bucket_counts) != len(point.explicit_bounds) + 1 and point.bucket_counts:
            decoded.refuse(where, f"{at}: bucket_counts needs one more than explicit_bounds")
            return
        buckets = distributions.explicit(point.explicit_bounds, point.bucket_counts)
    if sum(n for _, _, n in buckets) != point.count:
        decoded.refuse(where, f"{at}: its buckets hold another count than {point.count}")
        return
    when = from_nanoseconds(point.time_unix_nano)
    if cumulative:
        start = from_nanoseconds(point.start_time_unix_nano) if point.start_time_unix_nano else None
        if exponential:
            whole = distributions.Cumulative(
                start,
                point.count,
                figures[0],
                scale=point.scale,
                zero=point.zero_count,
                positive=distributions.indexed(point.positive.offset, point.positive.bucket_counts),
                negative=distributions.indexed(point.negative.offset, point.negative.bucket_counts),
                low=figures[1],
                high=figures[2],
            )
        else:
            whole = distributions.Cumulative(
                start,
                point.count,
                figures[0],
                tuple(point.explicit_bounds),
                tuple(int(n) for n in point.bucket_counts),
                low=figures[1],
                high=figures[2],
            )
        decoded.histograms[len(decoded.events)] = whole
        total = figures[0] if figures[0] is not None else 0.0
    else:
        found = distributions.sketch(buckets, point.count, *figures)
        if found is None:
            return  # no observations in the interval: nothing to add
        decoded.distributions[len(decoded.events)] = found
        total = found.sum
    decoded.events.append(MetricEvent(name, total, "histogram", unit, tag_text, source, when))
    decoded.where.append(where)


def _point(
    decoded: Decoded,
    tag_texts: TagTexts,
    scoped: dict[str, str],
    name: str,
    unit: str | None,
    metric_type: MetricType,
    running: bool,
    point: metrics_pb2.NumberDataPoint,
) -> None:
    tag_text, source, where = _series(tag_texts, scoped, name, point.attributes)
    if point.flags & NO_RECORDED_VALUE or not point.time_unix_nano:
        decoded.skipped += 1
        return
    value = float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double
    if not math.isfinite(value):
        decoded.refuse(where, f"point at {point.time_unix_nano} ns: {value} is not a number")
        return
    if running:
        start = point.start_time_unix_nano
        decoded.totals[len(decoded.events)] = from_nanoseconds(start) if start else None
    decoded.events.append(
        MetricEvent(
            name, value, metric_type, unit, tag_text, source, from_nanoseconds(point.time_unix_nano)
        )
    )
    decoded.where.append(where)


def _summary(
    decoded: Decoded,
    tag_texts: TagTexts,
    scoped: dict[str, str],
    name: str,
    unit: str | None,
    summary: metrics_pb2.SummaryDataPoint,
) -> None:
    """A summary point as Prometheus keeps one: `<name>_count` and `<name>_sum`, running
    totals since its start time, and each quantile the gauge `<name>{quantile="0.99"}`."""
    attributes = list(summary.attributes)
    for suffix, total in (("_count", float(summary.count)), ("_sum", summary.sum)):
        point = metrics_pb2.NumberDataPoint(
            as_double=total,
            attributes=attributes,
            time_unix_nano=summary.time_unix_nano,
            start_time_unix_nano=summary.start_time_unix_nano,
            flags=summary.flags,
        )
        _point(decoded, tag_texts, scoped, f"{name}{suffix}", unit, "counter", True, point)
    for quantile in summary.quantile_values:
        tag = common_pb2.KeyValue(
            key="quantile", value=common_pb2.AnyValue(string_value=repr(quantile.quantile))
        )
        point = metrics_pb2.NumberDataPoint(
            as_double=quantile.value,
            attributes=[*attributes, tag],
            time_unix_nano=summary.time_unix_nano,
            flags=summary.flags,
        )
        _point(decoded, tag_texts, scoped, name, unit, "gauge", False, point)
