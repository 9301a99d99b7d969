"""Prometheus native histograms (remote write 1.0 and 2.0: the same Histogram message) as
cumulative distribution points (ingest/distributions.py, Cumulative).

- Exponential schemas -4..8 are OTLP's exponential buckets at that scale: Prometheus' bucket
  i is (base^(i-1), base^i], OTLP's (and Cumulative's) i - 1, on the negative side too.
- Schema -53 (2.0's custom bounds) is explicit buckets: positive bucket i of the bounds
  `custom_values`, the last one +Inf.
- Integer histograms carry bucket deltas, float ones counts: a float count must be a whole
  number.
- What cannot be read is answered with the reason (a string), naming the field: spans that do
  not cover the counts, a bucket below zero, another schema, more observations in the buckets
  than the count, buckets more than WIDEST indexes apart, custom buckets without bounds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ingest.distributions import Cumulative

RESET_YES, RESET_GAUGE = 1, 3  # a native histogram's reset hint (the same in 1.0 and 2.0)
CUSTOM_BOUNDS, SCHEMAS = -53, range(-4, 9)  # the native histogram schemas read
# Bucket indexes one side of a native histogram may span: at schema 8, values 2^128 apart (a
# histogram is held densely between its outermost buckets).
WIDEST = 2**15


def point(histogram: Any, start: datetime | None) -> Cumulative | str:
    """A native histogram as a cumulative distribution point, or why it cannot be one."""
    positive = _buckets(
        "positive", histogram.positive_spans, histogram.positive_deltas, histogram.positive_counts
    )
    if isinstance(positive, str):
        return positive
    negative = _buckets(
        "negative", histogram.negative_spans, histogram.negative_deltas, histogram.negative_counts
    )
    if isinstance(negative, str):
        return negative
    zero = histogram.zero_count_int
    if histogram.WhichOneof("zero_count") == "zero_count_float":
        whole = _whole(histogram.zero_count_float)
        if whole is None:
            return f"zero_count_float: {histogram.zero_count_float} is not a whole count"
        zero = whole
    sent = histogram.count_int
    if histogram.WhichOneof("count") == "count_float":
        sent = histogram.count_float
        if not (math.isfinite(sent) and sent >= 0):
            return f"count_float: {sent} is not a count"
    held = zero + sum(positive.values()) + sum(negative.values())
    if held > sent:  # a larger count is fine: NaN observations are in no bucket
        return f"its buckets hold {held} observations, more than its count {sent:g}"
    total = histogram.sum if math.isfinite(histogram.sum) else None
    reset = histogram.reset_hint == RESET_YES
    if histogram.schema == CUSTOM_BOUNDS:
        bounds = tuple(histogram.custom_values)
        if not bounds:
            return "custom_values: custom buckets need at least one bound"
        if not all(map(math.isfinite, bounds)) or any(
            b <= a for a, b in itertools.pairwise(bounds)
        ):
            return "custom_values: the bounds must be finite and increasing"
        if negative or zero or any(not 0 <= i <= len(bounds) for i in positive):
            return f"custom buckets are positive buckets 0..{len(bounds)}, one per bound and +Inf"
        counts = tuple(positive.get(i, 0) for i in range(len(bounds) + 1))
        return Cumulative(start, held, total, bounds, counts, reset=reset)
    if histogram.schema not in SCHEMAS:
        return f"schema {histogram.schema}: this server reads -4..8 and -53 (custom buckets)"
    for side, found in (("positive", positive), ("negative", negative)):
        if found and max(found) - min(found) > WIDEST:
            return f"{side} buckets {min(found)}..{max(found)}: more than {WIDEST} indexes apart"
    # Prometheus' bucket i is (base^(i-1), base^i]: OTLP's (and Cumulative's) i - 1.
    return Cumulative(
        start,
        held,
        total,
        scale=histogram.schema,
        zero=zero,
        positive={i - 1: n for i, n in positive.items()},
        negative={i - 1: n for i, n in negative.items()},
        reset=reset,
    )


def _buckets(
    side: str, spans: Sequence[Any], deltas: Sequence[int], counts: Sequence[float]
) -> dict[int, int] | str:
    """Bucket index -> count (empty ones left out) from the spans and the deltas (an integer
    histogram) or counts (a float one), or why they do not make buckets."""
    if deltas and counts:
        return f"{side}_deltas and {side}_counts: a histogram has one or the other"
    values: list[int] = []
    running = 0
    for delta in deltas:
        running += delta
        if running < 0:
            return f"{side}_deltas: bucket {len(values)} would count below zero"
        values.append(running)
    for count in counts:
        whole = _whole(count)
        if whole is None:
            return f"{side}_counts: {count} is not a whole count"
        values.append(whole)
    covered = sum(span.length for span in spans)
    if covered != len(values):
        return f"{side}_spans cover {covered} buckets, and there are {len(values)} counts"
    found: dict[int, int] = {}
    index = place = 0
    for number, span in enumerate(spans):
        index = span.offset if number == 0 else index + span.offset
        for value in values[place : place + span.length]:
            if value:
                found[index] = value
            index += 1
        place += span.length
    return found


def _whole(count: float) -> int | None:
    """A float histogram's count as a whole number; None if it is not one."""
    if not math.isfinite(count) or count < 0 or count != int(count):
        return None
    return int(count)
