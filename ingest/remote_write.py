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
- Native histograms and exemplars are counted and not stored yet: a request with native
  histograms is answered 400 for them (never a 2xx for something not kept).
- Metadata (type, help, unit) becomes the metric's unit and description, and its type when the
  metric is new.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import cramjam
import msgspec
from google.protobuf.message import DecodeError

from core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
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
    native_histograms: int = 0
    exemplars: int = 0


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    samples: list[tuple[int, float, int]]  # (ms, value, start ms or 0)
    family: Family | None
    histograms: int
    exemplars: int


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


def _series_v1(request: v1.WriteRequest, families: dict[str, Family]) -> Iterable[Series]:
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels if label.value}
        name = labels.pop("__name__", "")
        samples = [(s.timestamp, s.value, 0) for s in series.samples]
        yield Series(
            name,
            labels,
            samples,
            _family(name, families),
            len(series.histograms),
            len(series.exemplars),
        )


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
        labels = {symbols[refs[i]]: symbols[refs[i + 1]] for i in range(0, len(refs), 2)}
        labels = {k: v for k, v in labels.items() if v}
        name = labels.pop("__name__", "")
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
        samples = [(s.timestamp, s.value, s.start_timestamp or created) for s in series.samples]
        yield Series(name, labels, samples, family, len(series.histograms), len(series.exemplars))


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
            request = v1.WriteRequest.FromString(body)
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
    tag_texts: dict[tuple[tuple[str, str], ...], msgspec.Raw] = {}
    for one in series:
        decoded.native_histograms += one.histograms
        decoded.exemplars += one.exemplars
        if not one.name:
            decoded.refuse(_where("", one.labels), "no __name__ label")
            continue
        name = named(one.name)
        tags = {named(k, TAG_KEY): v for k, v in one.labels.items()}
        key = tuple(sorted(tags.items()))
        tag_text = tag_texts.get(key)
        if tag_text is None:
            tag_text = tag_texts[key] = msgspec.Raw(_encode(dict(key)))
        metric_type, running = kind_of(one.name, one.labels, one.family)
        fixed = types.get(name)
        if fixed is not None:  # the metric's own type; a Prometheus counter is a running total
            running = fixed == "counter" and not one.name.endswith("_created")
            metric_type = cast(MetricType, fixed)
        where = _where(one.name, one.labels)
        unit = (one.family.unit[:32] or None) if one.family is not None else None
        for stamp, value, start in one.samples:
            if math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN:
                decoded.stale += 1
                continue
            if not math.isfinite(value):
                decoded.refuse(where, f"sample at {stamp} ms: {value} is not a finite number")
                continue
            if running:
                decoded.totals[len(decoded.events)] = (
                    from_nanoseconds(start * 1_000_000) if start else None
                )
            decoded.events.append(
                MetricEvent(
                    name,
                    value,
                    metric_type,
                    unit,
                    tag_text,
                    None,
                    from_nanoseconds(stamp * 1_000_000),
                )
            )
            decoded.where.append(where)
    return decoded


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
