"""Prometheus remote write (POST /api/v1/write), 1.0 and 2.0, into metric events.

The body is a snappy-compressed (block format) protobuf message: `prometheus.WriteRequest`
(1.0), or `io.prometheus.write.v2.Request` when the Content-Type says
`proto=io.prometheus.write.v2.Request` (2.0). Decoded by the `protobuf` runtime from the
messages in ingest/proto (compiled by `make install`); snappy by `cramjam`.

- A series' `__name__` is the metric, its other labels (`job`, `instance` included) its tags;
  a name our metrics cannot take is made one (wire.named: `:x` is `_:x`).
- The metric's type: the existing metric's, else the one the sender's metadata gave for its
  family (2.0 carries it per series; 1.0 in metadata-only requests, remembered here), else by
  the name's suffix (`_total`, `_bucket`, `_count`, `_sum`: a counter; anything else a gauge).
  Counters (and the `_bucket`, `_sum` and `_count` of histograms and summaries) are running
  totals: stored as their increases with the totals beside them (ingest/totals.py).
- Samples are dated by their millisecond timestamps. A stale marker (the NaN Prometheus writes
  when a series disappears) is not a value: skipped and counted. Any other NaN or infinity,
  and samples our limits refuse (too old, too far ahead, a tag too long), are not stored: the
  answer is then a 400 naming them, while the rest of the request is stored (the sender drops
  a refused request, so one bad sample must not cost the others).
- A native histogram (exponential buckets, schema -4..8; custom bounds, schema -53: read by
  ingest/native_histograms.py) is a distribution (ingest/distributions.py): cumulative,
  compared with the series' previous one at commit (ingest/totals.py) like OTLP's; a gauge
  histogram (reset hint GAUGE, or metadata GAUGEHISTOGRAM) is stored as it is, each sample
  its own observations.
- Exemplars are counted and not stored.
- Metadata (type, help, unit) becomes the metric's unit and description, and its type when the
  metric is new.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import cramjam
import msgspec
from google.protobuf.message import DecodeError

from core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ingest import distributions, native_histograms
from ingest.proto import remote_write_v1_pb2 as v1
from ingest.proto import remote_write_v2_pb2 as v2
from ingest.samples import Family, Samples
from ingest.tagsets import TAG_KEY
from ingest.wire import MetricEvent, MetricType, from_nanoseconds, named

V1 = "prometheus.WriteRequest"
V2 = "io.prometheus.write.v2.Request"
MEDIA_TYPE = "application/x-protobuf"
STALE_NAN = 0x7FF0000000000002  # Prometheus' staleness marker (model/value)
MS = 1_000_000  # nanoseconds in the protocol's milliseconds
CUMULATIVE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")

# Prometheus' metric types (the same numbers in 1.0 and 2.0), as ours.
COUNTER, GAUGE, HISTOGRAM, GAUGE_HISTOGRAM, SUMMARY = 1, 2, 3, 4, 5
_encode = msgspec.json.encode


@dataclass
class Decoded(Samples):
    """A request's samples, and what remote write's answer counts beside them."""

    stale: int = 0
    exemplars: int = 0


@dataclass(frozen=True)
class Known:
    """What a label set means here, worked out once per process (a sender sends the same
    series in every request): the name as sent and ours, the tags as event JSON, and the
    series as errors name it."""

    sent: str  # __name__ as sent ("" if none)
    labels: dict[str, str]  # the other labels, as sent
    name: str  # the metric (wire.named)
    tag_text: msgspec.Raw
    where: str


KNOWN_MOST = 200_000  # label sets remembered; past this the memory starts again
# label set -> Known: 2.0's by its (name, value) pairs, 1.0's by the labels' encoded bytes
# (ingest/proto/remote_write_v1.proto, TimeSeriesView)
_known: dict[tuple[tuple[str, str], ...] | tuple[bytes, ...], Known] = {}


def known(pairs: tuple[tuple[str, str], ...]) -> Known:
    """A label set (name, value pairs as sent) as this server takes it."""
    return _known.get(pairs) or _remember(pairs, _meaning(pairs))


def _remember(key: tuple[tuple[str, str], ...] | tuple[bytes, ...], found: Known) -> Known:
    if len(_known) >= KNOWN_MOST:
        _known.clear()
    _known[key] = found
    return found


def _meaning(pairs: tuple[tuple[str, str], ...]) -> Known:
    labels = {k: v for k, v in pairs if v}
    sent = labels.pop("__name__", "")
    tags = sorted((named(k, TAG_KEY), v) for k, v in labels.items())
    return Known(
        sent,
        labels,
        named(sent) if sent else "",
        msgspec.Raw(_encode(dict(tags))),
        _where(sent, labels),
    )


@dataclass(slots=True)
class Series:
    known: Known
    stamps: list[int]  # each sample's milliseconds
    values: list[float]
    starts: list[int] | None  # each sample's start (ms, 0: not sent); None: none sent
    family: Family | None
    histograms: Sequence[Any]  # native histograms: v1.Histogram or v2.Histogram
    exemplars: int
    start: int = 0  # ms, 2.0's created_timestamp: since when the series' histograms count

    @property
    def name(self) -> str:
        return self.known.sent

    @property
    def labels(self) -> dict[str, str]:
        return self.known.labels


def protocol_of(content_type: str | None, content_encoding: str | None) -> str:
    """V1 or V2 from the request's headers, or 415."""
    media, _, parameters = (content_type or "").partition(";")
    if media.strip().lower() != MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type: {MEDIA_TYPE} (remote write), not {content_type or 'none'!r}"
        )
    proto = V1
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "proto":
            proto = value.strip().strip('"')
    if proto not in (V1, V2):
        raise UnsupportedMediaType(f"proto={proto}: this server reads {V1} and {V2}")
    if (content_encoding or "").strip().lower() != "snappy":
        raise UnsupportedMediaType(
            f"Content-Encoding: snappy (remote write), not {content_encoding or 'none'!r}"
        )
    return proto


def _uncompressed_length(body: bytes) -> int:
    """The length a snappy block states in its varint preamble (or -1 if it has none)."""
    length = shift = 0
    for byte in body[:5]:
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length
        shift += 7
    return -1


def decompress(body: bytes, most_bytes: int) -> bytes:
    """The snappy block `body` decompressed, or 400 (not snappy) / 413 (past `most_bytes`)."""
    length = _uncompressed_length(body)
    if length < 0:
        raise BadRequest("The body is not snappy-compressed (block format): no length preamble")
    if length > most_bytes:
        raise PayloadTooLarge(
            f"The body decompresses to {length} bytes; the limit is {most_bytes} "
            "(INGEST_MAX_BODY_BYTES)"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"The body is not valid snappy (block format): {exc}") from None


# TimeSeriesView's fields, by number: read through ListFields, which returns only those sent
# (about twice as fast as asking for each: an empty repeated field is an object too)
_LABELS, _SAMPLES, _EXEMPLARS, _HISTOGRAMS = 1, 2, 3, 4


def _series_v1(request: v1.WriteRequestView, families: dict[str, Family]) -> Iterable[Series]:
    family_of: dict[str, Family | None] = {}  # sample name -> its family, for this request
    for series in request.timeseries:
        encoded: tuple[bytes, ...] = ()
        points: Sequence[Any] = ()
        histograms: Sequence[Any] = ()
        exemplars = 0
        for field, value in series.ListFields():
            number = field.number
            if number == _LABELS:
                encoded = tuple(value)
            elif number == _SAMPLES:
                points = value
            elif number == _EXEMPLARS:
                exemplars = len(value)
            elif number == _HISTOGRAMS:
                histograms = value
        one = _known.get(encoded)
        if one is None:
            labels = [v1.Label.FromString(label) for label in encoded]
            one = _remember(encoded, _meaning(tuple((label.name, label.value) for label in labels)))
        if len(points) == 1:  # a scrape's: one sample a series
            point = points[0]
            stamps, values = [point.timestamp], [point.value]
        else:
            stamps, values = [s.timestamp for s in points], [s.value for s in points]
        sent = one.sent
        family = family_of.get(sent, _UNSEEN)
        if family is _UNSEEN:
            family = family_of[sent] = _family(sent, families)
        yield Series(one, stamps, values, None, family, histograms, exemplars)


_UNSEEN = Family(-1)


def _series_v2(request: v2.Request) -> Iterable[Series]:
    symbols = request.symbols
    if symbols and symbols[0] != "":
        raise BadRequest("symbols: the first symbol must be the empty string (remote write 2.0)")
    count = len(symbols)
    for number, series in enumerate(request.timeseries):
        refs = series.labels_refs
        if len(refs) % 2 or any(ref >= count for ref in refs):
            raise BadRequest(
                f"timeseries[{number}].labels_refs: pairs of references into the {count} symbols"
            )
        pairs = tuple([(symbols[refs[i]], symbols[refs[i + 1]]) for i in range(0, len(refs), 2)])
        one = known(pairs)
        meta = series.metadata
        if meta.help_ref >= count or meta.unit_ref >= count:
            raise BadRequest(
                f"timeseries[{number}].metadata: help_ref and unit_ref are references into "
                f"the {count} symbols"
            )
        family = None
        if meta.type or meta.help_ref or meta.unit_ref:
            family = Family(meta.type, symbols[meta.help_ref], symbols[meta.unit_ref])
        created = series.created_timestamp
        points = series.samples
        yield Series(
            one,
            [s.timestamp for s in points],
            [s.value for s in points],
            [s.start_timestamp or created for s in points],
            family,
            series.histograms,
            len(series.exemplars),
            created,
        )


def _family(name: str, families: dict[str, Family]) -> Family | None:
    """The metadata of the family a sample name belongs to (`x_total` and `x_bucket` are of
    family `x`; a 2.x text scrape names a counter's family `x_total` itself)."""
    found = families.get(name)
    if found is not None:
        return found
    for suffix in (*CUMULATIVE_SUFFIXES, "_created"):
        if name.endswith(suffix):
            return families.get(name[: -len(suffix)])
    return None


def kind_of(name: str, labels: dict[str, str], family: Family | None) -> tuple[MetricType, bool]:
    """(our metric type, whether its samples are running totals) for a sample name."""
    if name.endswith("_created"):
        return "gauge", False  # an OpenMetrics counter's start time, in seconds
    kind = family.kind if family is not None else 0
    if kind == COUNTER:
        return "counter", True
    if kind in (HISTOGRAM, SUMMARY):
        if name.endswith(("_bucket", "_sum", "_count")):
            return "counter", True
        return "gauge", False  # a summary's quantiles
    if kind:
        return "gauge", False  # gauge, gauge histogram, info, stateset
    if name.endswith("_total") or (name.endswith("_bucket") and "le" in labels):
        return "counter", True
    if name.endswith(("_count", "_sum")):
        return "counter", True
    return "gauge", False


def parse(body: bytes, protocol: str, families: dict[str, Family]) -> tuple[list[Series], Decoded]:
    """The series of a decompressed body, and its metadata (in the result's `families`)."""
    decoded = Decoded()
    try:
        if protocol == V1:
            request = v1.WriteRequestView.FromString(body)
            for meta in request.metadata:
                decoded.families[meta.metric_family_name] = Family(meta.type, meta.help, meta.unit)
            series = list(_series_v1(request, {**families, **decoded.families}))
        else:
            series = list(_series_v2(v2.Request.FromString(body)))
    except DecodeError as exc:
        raise BadRequest(f"The body is not a valid {protocol} protobuf message: {exc}") from None
    for one in series:
        if one.family is not None and one.name:
            decoded.families.setdefault(one.name, one.family)
    return series, decoded


def events(series: list[Series], decoded: Decoded, types: dict[str, str]) -> Decoded:
    """Every storable sample of `series` as an event (`types`: the existing metrics' types)."""
    moments: dict[int, datetime] = {}  # ms -> datetime: a scrape's series share their stamps
    # (name, family, whether an `le` label) -> what _kind says: the same for a name's series
    kinds: dict[tuple[str, int, bool], tuple[MetricType, bool, str | None]] = {}
    found, where_of, totals = decoded.events, decoded.where, decoded.totals
    for one in series:
        decoded.exemplars += one.exemplars
        label_set = one.known
        where = label_set.where
        if not label_set.sent:
            decoded.refuse(where, "no __name__ label")
            continue
        name, tag_text = label_set.name, label_set.tag_text
        family = one.family
        seen = (label_set.sent, id(family), "le" in label_set.labels)  # the series holds family
        kind = kinds.get(seen)
        if kind is None:
            kind = kinds[seen] = _kind(label_set, family, types)
        metric_type, running, unit = kind
        stamps, values, starts = one.stamps, one.values, one.starts
        if len(values) == 1 and starts is None and math.isfinite(values[0]):  # a scrape's
            stamp = stamps[0]
            moment = moments.get(stamp) or moments.setdefault(stamp, from_nanoseconds(stamp * MS))
            if running:
                totals[len(found)] = None
            found.append(MetricEvent(name, values[0], metric_type, unit, tag_text, None, moment))
            where_of.append(where)
        elif values:
            if not math.isfinite(sum(values)):  # a stale marker, NaN or infinity among them
                stamps, values, starts = _finite(decoded, where, stamps, values, starts)
            first = len(found)
            found += [
                MetricEvent(
                    name,
                    value,
                    metric_type,
                    unit,
                    tag_text,
                    None,
                    moments.get(stamp) or moments.setdefault(stamp, from_nanoseconds(stamp * MS)),
                )
                for stamp, value in zip(stamps, values, strict=True)
            ]
            where_of += [where] * len(values)
            if running:
                for index, start in enumerate(starts or [0] * len(values), first):
                    totals[index] = from_nanoseconds(start * MS) if start else None
        if one.histograms:
            gauge = family is not None and family.kind == GAUGE_HISTOGRAM
            for histogram in one.histograms:
                _native(decoded, name, unit, tag_text, where, histogram, one.start, gauge)
    return decoded


def _kind(
    label_set: Known, family: Family | None, types: dict[str, str]
) -> tuple[MetricType, bool, str | None]:
    """(our metric type, whether its samples are running totals, the unit) of a series."""
    metric_type, running = kind_of(label_set.sent, label_set.labels, family)
    fixed = types.get(label_set.name)
    if fixed is not None:  # the metric's own type; a Prometheus counter is a running total
        running = fixed == "counter" and not label_set.sent.endswith("_created")
        metric_type = cast(MetricType, fixed)
    return metric_type, running, (family.unit[:32] or None) if family is not None else None


def _finite(
    decoded: Decoded, where: str, stamps: list[int], values: list[float], starts: list[int] | None
) -> tuple[list[int], list[float], list[int] | None]:
    """The samples with finite values; stale markers counted, other NaNs and infinities
    refused."""
    kept = []
    for index, (stamp, value) in enumerate(zip(stamps, values, strict=True)):
        if math.isfinite(value):
            kept.append(index)
        elif _is_stale(value):
            decoded.stale += 1
        else:
            decoded.refuse(where, f"sample at {stamp} ms: {value} is not a finite number")
    return (
        [stamps[i] for i in kept],
        [values[i] for i in kept],
        [starts[i] for i in kept] if starts is not None else None,
    )


def _native(
    decoded: Decoded,
    name: str,
    unit: str | None,
    tag_text: msgspec.Raw,
    where: str,
    histogram: Any,
    start: int,
    gauge: bool,
) -> None:
    """A native histogram as an event with its distribution: a cumulative one (what it adds
    to the series' previous one is found at commit), or a gauge histogram's own."""
    at = f"native histogram at {histogram.timestamp} ms"
    if _is_stale(histogram.sum):
        decoded.stale += 1
        return
    point = native_histograms.point(histogram, from_nanoseconds(start * MS) if start else None)
    if isinstance(point, str):
        decoded.refuse(where, f"{at}: {point}")
        return
    if gauge or histogram.reset_hint == native_histograms.RESET_GAUGE:
        if point.count > distributions.MOST_COUNT:
            decoded.refuse(where, f"{at}: more than {distributions.MOST_COUNT} observations")
            return
        found = point.whole()
        if found is None:
            return  # no observations: nothing to add
        decoded.distributions[len(decoded.events)] = found
        value = found.sum
    else:
        decoded.histograms[len(decoded.events)] = point
        value = point.sum if point.sum is not None else 0.0
    when = from_nanoseconds(histogram.timestamp * MS)
    decoded.events.append(MetricEvent(name, value, "histogram", unit, tag_text, None, when))
    decoded.where.append(where)


def _is_stale(value: float) -> bool:
    """Whether `value` is Prometheus' staleness marker (a NaN of its own)."""
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN


def _where(name: str, labels: dict[str, str]) -> str:
    """A series as PromQL writes it: `up{instance="a:9100",job="node"}`."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name or "{}"


class Memory:
    """What senders' metadata said of each family, for the samples of 1.0 requests (whose
    metadata comes in requests of its own), and which families' help and unit are written."""

    MOST = 100_000  # families remembered: beyond, the name's suffix decides

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.described: dict[str, Family] = {}

    def learn(self, families: dict[str, Family]) -> None:
        for name, family in families.items():
            if name in self.families or len(self.families) < self.MOST:
                self.families[name] = family

    def undescribed(self, families: dict[str, Family]) -> dict[str, Family]:
        return {n: f for n, f in families.items() if self.described.get(n) != f}

    def described_now(self, names: Iterable[str], families: dict[str, Family]) -> None:
        for name in names:
            if name in self.described or len(self.described) < self.MOST:
                self.described[name] = families[name]
