"""Histogram points as distributions in our sketch's terms (0023_distributions.sql).

A histogram point (OTLP Histogram with explicit bounds, OTLP ExponentialHistogram) counts
observations in buckets. Each bucket's count is spread over the sketch keys its range covers,
in proportion to the part of the range each key covers (the observations taken as uniform
within the bucket, as PromQL's histogram_quantile does), with whole counts that add up to the
bucket's. A percentile of the result is then within our sketch's 1% where buckets are no wider
than a key (an exponential histogram of scale 6 or more: its buckets grow by at most 1.1%), and
within the bucket's width otherwise; always within [min, max].

The point's count and sum are kept as sent (a missing sum is taken from the bucket midpoints);
min and max as sent, else the edges of the outermost non-empty buckets (the open-ended first
and last explicit buckets end at their one bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

KEY_BIAS = 50_000
LOG_GAMMA = 0.018000486023620893  # ln((1 + a) / (1 - a)), a = 0.009: see 0003_rollups.sql
TINY = 1e-9  # a bucket reaching down to 0 is spread down to this fraction of its top
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


def _key_range(key: int) -> tuple[float, float]:
    """The values (low, high] a positive sketch key holds."""
    return math.exp((key - KEY_BIAS - 1) * LOG_GAMMA), math.exp((key - KEY_BIAS) * LOG_GAMMA)


def _positive_shares(low: float, high: float) -> dict[int, float]:
    """Each key's share of the positive range (low, high], 0 <= low < high."""
    low = max(low, high * TINY)
    first, last = sketch_key(low), sketch_key(high)
    if first == last:
        return {last: 1.0}
    width = high - low
    shares = {}
    for key in range(first, last + 1):
        bottom, top = _key_range(key)
        part = min(top, high) - max(bottom, low)
        if part > 0:
            shares[key] = part / width
    return shares


def _shares(low: float, high: float) -> dict[int, float]:
    """Each key's share of (low, high], observations uniform in it."""
    if not high > low:
        return {sketch_key(high): 1.0}
    if low >= 0:
        return _positive_shares(low, high)
    if high <= 0:  # mirrored: a negative key holds (-high_k, -low_k]
        return {-k: s for k, s in _positive_shares(-high, -low).items()}
    negative, positive = -low / (high - low), high / (high - low)
    found = {-k: s * negative for k, s in _positive_shares(0.0, -low).items()}
    for key, share in _positive_shares(0.0, high).items():
        found[key] = found.get(key, 0.0) + share * positive
    return found


def _spread(tally: dict[int, int], low: float, high: float, count: int) -> None:
    """`count` observations of (low, high] onto `tally`, whole counts by largest remainder."""
    if count <= 0:
        return
    shares = _shares(low, high)
    exact = {key: share * count for key, share in shares.items()}
    whole = {key: int(part) for key, part in exact.items()}
    left = count - sum(whole.values())
    for key in sorted(exact, key=lambda k: exact[k] - whole[k], reverse=True)[:left]:
        whole[key] += 1
    for key, n in whole.items():
        if n:
            tally[key] = tally.get(key, 0) + n


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
    base = 2.0 ** (2.0**-scale)
    found: list[tuple[float, float, int]] = []
    offset, counts = negative
    for i in reversed(range(len(counts))):
        index = offset + i
        found.append((-_power(base, index + 1), -_power(base, index), int(counts[i])))
    if zero_count:
        found.append((0.0, 0.0, int(zero_count)))
    offset, counts = positive
    for i, n in enumerate(counts):
        index = offset + i
        found.append((_power(base, index), _power(base, index + 1), int(n)))
    del zero_threshold  # observations in the zero bucket are taken as 0
    return found


def _power(base: float, index: int) -> float:
    try:
        return base**index
    except OverflowError:
        return math.inf


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
