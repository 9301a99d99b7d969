"""Histogram points as distributions in our sketch's terms (0023_distributions.sql).

A histogram point (OTLP Histogram with explicit bounds, OTLP ExponentialHistogram) counts
observations in buckets. Each bucket's count is spread over its range as if the observations
were uniform within it (as PromQL's histogram_quantile takes them): at up to 64 evenly spaced
values, whole counts adding up to the bucket's, each onto its sketch key. A percentile of the
result is within our sketch's 1% (and one key's width where a bucket straddles two keys) when
buckets are no wider than a key, as an exponential histogram of scale 8 or more (0.27%); within
the bucket's width otherwise; always within [min, max].

The point's count and sum are kept as sent (a missing sum is taken from the bucket midpoints);
min and max as sent, else the edges of the outermost non-empty buckets (the open-ended first
and last explicit buckets end at their one bound; a histogram of no bounds, one bucket open at
both ends, is its observations at their mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

KEY_BIAS = 50_000
LOG_GAMMA = 0.018000486023620893  # ln((1 + a) / (1 - a)), a = 0.009: see 0003_rollups.sql
POSITIONS = 64  # values a bucket's observations are spread over, at most
LARGEST = 1.7976931348623157e308
MOST_COUNT = 2**31 - 1  # observations of one point (the tiers count them as integer)


def sketch_key(value: float) -> int:
    """analytics.sketch_key of one value: 50000 + ceil(ln |v| / ln g), negated for v < 0."""
    if value > 0:
        return KEY_BIAS + math.ceil(math.log(value) / LOG_GAMMA)
    if value < 0:
        return -(KEY_BIAS + math.ceil(math.log(-value) / LOG_GAMMA))
    return 0


@dataclass(frozen=True)
class Sketch:
    count: int
    sum: float
    min: float
    max: float
    keys: list[int]
    counts: list[int]

    def text(self) -> tuple[str, str]:
        """The keys and counts as the array literals the deltas take."""
        return (
            "{" + ",".join(map(str, self.keys)) + "}",
            "{" + ",".join(map(str, self.counts)) + "}",
        )


def _spread(tally: dict[int, int], low: float, high: float, count: int) -> None:
    """`count` observations of (low, high] onto `tally`, uniform in the range: at POSITIONS
    evenly spaced values at most, each with a whole share of the count (the remainder spread
    evenly too), so a wide bucket costs a bounded number of keys whatever its count."""
    if count <= 0:
        return
    if not high > low:
        tally[sketch_key(high)] = tally.get(sketch_key(high), 0) + count
        return
    places = min(count, POSITIONS)
    each, left = divmod(count, places)
    for j in range(places):
        extra = (j + 1) * left // places - j * left // places
        key = sketch_key(low + (high - low) * (j + 0.5) / places)
        tally[key] = tally.get(key, 0) + each + extra


def sketch(
    buckets: Sequence[tuple[float, float, int]],
    count: int,
    total: float | None,
    low: float | None,
    high: float | None,
) -> Sketch | None:
    """The sketch of a point with `buckets` of (low, high, observations), or None if empty.
    `low`/`high`: the point's min/max where it has them."""
    filled = [(a, b, n) for a, b, n in buckets if n > 0]
    if not filled or count <= 0:
        return None
    smallest = low if low is not None else filled[0][0]
    largest = high if high is not None else filled[-1][1]
    if math.isinf(smallest):
        smallest = filled[0][1]
    if math.isinf(largest):
        largest = filled[-1][0]
    if not (math.isfinite(smallest) and math.isfinite(largest)):
        # One bucket open at both ends (no bounds) and no min and max: the observations are
        # placed at their mean; without a sum there is nowhere to place them.
        if total is None:
            return None
        smallest = largest = total / sum(n for _, _, n in filled)
    tally: dict[int, int] = {}
    for a, b, n in filled:
        a, b = max(a, smallest), min(b, largest)
        _spread(tally, min(a, b), b, n)
    keys = sorted(tally)
    if total is None:
        total = sum(n * (max(a, smallest) + min(b, largest)) / 2 for a, b, n in filled)
    return Sketch(sum(tally.values()), total, smallest, largest, keys, [tally[k] for k in keys])


def explicit(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[float, float, int]]:
    """OTLP explicit buckets: (-inf, b0], (b0, b1], ..., (b_last, +inf)."""
    edges = [-math.inf, *bounds, math.inf]
    return [(edges[i], edges[i + 1], int(n)) for i, n in enumerate(counts)]


def exponential(
    scale: int,
    zero_count: int,
    zero_threshold: float,
    positive: tuple[int, Sequence[int]],
    negative: tuple[int, Sequence[int]],
) -> list[tuple[float, float, int]]:
    """OTLP exponential buckets: index i of scale s holds (base^i, base^(i+1)], base =
    2^(2^-s); negative ones mirrored; the zero bucket [-threshold, threshold] at 0."""
    step = math.ldexp(math.log(2.0), -scale)  # ln(base)
    found: list[tuple[float, float, int]] = []
    offset, counts = negative
    for i in reversed(range(len(counts))):
        index = offset + i
        found.append((-_bound(step, index + 1), -_bound(step, index), int(counts[i])))
    if zero_count:
        found.append((0.0, 0.0, int(zero_count)))
    offset, counts = positive
    for i, n in enumerate(counts):
        index = offset + i
        found.append((_bound(step, index), _bound(step, index + 1), int(n)))
    del zero_threshold  # observations in the zero bucket are taken as 0
    return found


def _bound(step: float, index: int) -> float:
    """base^index, within the finite floats."""
    try:
        return min(math.exp(step * index), LARGEST)
    except OverflowError:
        return LARGEST


@dataclass(frozen=True)
class Cumulative:
    """A cumulative histogram point as sent: counts since `start`. Explicit buckets are
    `bounds` and `counts`; exponential ones `scale`, `zero`, and the positive and negative
    buckets by index (`positive`, `negative`: index -> count)."""

    start: datetime | None
    count: int
    sum: float | None
    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    scale: int | None = None
    zero: int = 0
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)
    low: float | None = None  # min and max since `start`, where sent
    high: float | None = None
    reset: bool = False  # the sender says it counts from zero again (remote write's hint)

    def buckets(self) -> list[tuple[float, float, int]]:
        if self.scale is None:
            return explicit(self.bounds, self.counts)
        return exponential(self.scale, self.zero, 0.0, _dense(self.positive), _dense(self.negative))

    def whole(self) -> Sketch | None:
        """The point's sketch: every observation since its start."""
        return sketch(self.buckets(), self.count, self.sum, self.low, self.high)

    def since(self, previous: Cumulative) -> Sketch | bool | None:
        """The observations since `previous` (None: none), or False when the two cannot be
        compared bucket by bucket (then the caller counts this point as a restart or not)."""
        if self.count < previous.count:
            return False
        total = None
        if self.sum is not None and previous.sum is not None:
            total = self.sum - previous.sum
        if self.scale is None:
            if previous.scale is not None or previous.bounds != self.bounds:
                return False
            counts = [a - b for a, b in zip(self.counts, previous.counts, strict=True)]
            if any(n < 0 for n in counts):
                return False
            return sketch(
                explicit(self.bounds, counts), self.count - previous.count, total, None, None
            )
        if previous.scale is None or previous.scale < self.scale:
            return False
        shift = previous.scale - self.scale
        buckets = []
        for now, before in ((self.positive, previous.positive), (self.negative, previous.negative)):
            merged: dict[int, int] = {}
            for index, n in before.items():
                merged[index >> shift] = merged.get(index >> shift, 0) + n
            delta = {i: n - merged.get(i, 0) for i, n in now.items()}
            if any(n < 0 for n in delta.values()) or set(merged) - set(now):
                return False
            buckets.append(delta)
        zero = self.zero - previous.zero
        if zero < 0:
            return False
        found = exponential(self.scale, zero, 0.0, _dense(buckets[0]), _dense(buckets[1]))
        return sketch(found, self.count - previous.count, total, None, None)


def _dense(counts: dict[int, int]) -> tuple[int, list[int]]:
    """Buckets by index as (offset, counts)."""
    if not counts:
        return 0, []
    first = min(counts)
    return first, [counts.get(i, 0) for i in range(first, max(counts) + 1)]


def indexed(offset: int, counts: Sequence[int]) -> dict[int, int]:
    return {offset + i: int(n) for i, n in enumerate(counts) if n}
