"""A group's partial aggregates ("deltas"), computed here and written in its transaction.

Every group commit writes, besides its raw rows, one row per (minute, series) and one per
(minute, metric) it touched: count, sum, min, max and the sketch (sketch keys ascending, with
their counts). The compactor (jobs/compact.py) merges them into the rollup tiers; until then
queries add them to the tiers themselves, so an acknowledged event counts at once
(sql/migrations/0015_rollup_tiers.sql has the whole scheme).

Computed here rather than by the database: the same GROUP BY in SQL cost the database 3.6 µs
an event, about as much again as the COPY of the raw rows. A large group is grouped with numpy
(under 1 µs an event); a small one (the record path: a few events) in plain Python, where
numpy's fixed cost per call would dominate. The keys go to the database as array literals in
text (asyncpg encodes an int[] at about 0.5 µs an element). A sketch key is the database's
`analytics.sketch_key`, the same IEEE arithmetic (`ln`, a division, `ceil`), so rows rebuilt
from raw events by the database get the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ingest.distributions import KEY_BIAS, LOG_GAMMA, sketch_key
from ingest.validate import Batch

GROUP_SHIFT = 1 << 31  # minute * GROUP_SHIFT + id: one int64 per (minute, series or metric)
POWERS = 10 ** np.arange(1, 19, dtype=np.int64)
SMALL = 256  # events: below this, plain Python


@dataclass
class Rows:
    """Delta rows of one kind as parallel columns, the arguments of record_group."""

    minutes: list[datetime] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)
    mins: list[float] = field(default_factory=list)
    maxs: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # '{50012,50230}'
    key_counts: list[str] = field(default_factory=list)  # '{3,1}'

    def columns(self) -> tuple[list[object], ...]:
        return (
            self.minutes,  # type: ignore[return-value]
            self.owners,
            self.counts,
            self.sums,
            self.mins,
            self.maxs,
            self.keys,
            self.key_counts,
        )


@dataclass(frozen=True)
class Deltas:
    series: Rows
    metrics: Rows


def sketch_keys(values: NDArray[np.float64]) -> NDArray[np.int64]:
    """analytics.sketch_key of each value: 50000 + ceil(ln |v| / ln g), negated for v < 0."""
    keys = np.zeros(len(values), dtype=np.int64)
    positive = values > 0
    negative = values < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        keys[positive] = KEY_BIAS + np.ceil(np.log(values[positive]) / LOG_GAMMA)
        keys[negative] = -(KEY_BIAS + np.ceil(np.log(-values[negative]) / LOG_GAMMA))
    return keys


def _fixed_width(numbers: NDArray[np.int64]) -> tuple[bytes, int]:
    """`numbers` as decimal text, right-aligned in equal widths, each followed by a comma
    (array_in skips the spaces): element i is text[i * width : (i + 1) * width - 1]."""
    magnitude = np.abs(numbers)
    digits = 1 + np.searchsorted(POWERS, magnitude, side="right")
    width = int(digits.max()) + 2  # a sign and the comma
    text = np.full((len(numbers), width), ord(" "), dtype=np.uint8)
    text[:, -1] = ord(",")
    rest = magnitude.copy()
    for place in range(int(digits.max())):
        column = width - 2 - place
        text[:, column] = np.where(place < digits, rest % 10 + ord("0"), ord(" "))
        rest //= 10
    negative = np.flatnonzero(numbers < 0)
    text[negative, width - 2 - digits[negative]] = ord("-")
    return text.tobytes(), width


def _minute(cache: dict[int, datetime], minute: int) -> datetime:
    found = cache.get(minute)
    if found is None:
        found = cache[minute] = datetime.fromtimestamp(minute * 60, UTC)
    return found


def _rows(
    minutes: NDArray[np.int64],
    owners: NDArray[np.int64],
    values: NDArray[np.float64],
    keys: NDArray[np.int64],
    stamps: dict[int, datetime],
) -> Rows:
    """One row per (minute, owner): figures and the sketch of its values."""
    groups = minutes * GROUP_SHIFT + owners
    distinct, dense = np.unique(groups, return_inverse=True)
    # One sort by (group, key): keys lie within +-(KEY_BIAS + 41,400), under 2^17 either way.
    order = np.argsort(dense.astype(np.int64) << 18 | (keys + (1 << 17)))
    dense, values, keys = dense[order], values[order], keys[order]
    count = len(dense)
    new_group = np.empty(count, dtype=bool)
    new_group[0] = True
    np.not_equal(dense[1:], dense[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    new_key = new_group.copy()
    new_key[1:] |= keys[1:] != keys[:-1]
    key_starts = np.flatnonzero(new_key)
    rows = Rows(
        counts=np.diff(np.append(starts, count)).tolist(),
        sums=np.add.reduceat(values, starts).tolist(),
        mins=np.minimum.reduceat(values, starts).tolist(),
        maxs=np.maximum.reduceat(values, starts).tolist(),
    )
    rows.minutes = [_minute(stamps, minute) for minute in (distinct // GROUP_SHIFT).tolist()]
    rows.owners = (distinct % GROUP_SHIFT).tolist()
    if len(key_starts) == len(starts):  # one key a row (a scrape's: one value a series)
        rows.keys = [f"{{{key}}}" for key in keys[key_starts].tolist()]
        rows.key_counts = [f"{{{n}}}" for n in rows.counts]
        return rows
    # Where each group's keys begin among the distinct (group, key) pairs.
    splits = np.searchsorted(key_starts, starts).tolist()
    splits.append(len(key_starts))
    key_text, key_width = _fixed_width(keys[key_starts])
    count_text, count_width = _fixed_width(np.diff(np.append(key_starts, count)))
    for i in range(len(distinct)):
        first, last = splits[i], splits[i + 1]
        rows.keys.append(f"{{{key_text[first * key_width : last * key_width - 1].decode()}}}")
        rows.key_counts.append(
            f"{{{count_text[first * count_width : last * count_width - 1].decode()}}}"
        )
    return rows


def _minutes(batches: Sequence[Batch]) -> NDArray[np.int64]:
    """The minute (since the epoch) of every event; a batch within one minute costs nothing
    per event (events stamped as they happen mostly are)."""
    parts = []
    for batch in batches:
        first = int(batch.earliest.timestamp() // 60)
        if first == int(batch.latest.timestamp() // 60):
            parts.append(np.full(len(batch), first, dtype=np.int64))
        else:
            stamps = np.fromiter(map(datetime.timestamp, batch.times), np.float64, len(batch))
            parts.append(np.floor_divide(stamps, 60).astype(np.int64))
    return np.concatenate(parts)


def _small(
    batches: Sequence[Batch], series_ids: Sequence[Sequence[int]], metric_of: Mapping[int, int]
) -> Deltas:
    """The same rows for a few events, in plain Python."""
    found: tuple[dict[tuple[int, int], list[float]], ...] = ({}, {})
    for batch, ids in zip(batches, series_ids, strict=True):
        for when, series, event in zip(batch.times, ids, batch.events, strict=True):
            minute = int(when.timestamp() // 60)
            found[0].setdefault((minute, series), []).append(event.value)
            found[1].setdefault((minute, metric_of[series]), []).append(event.value)
    stamps: dict[int, datetime] = {}
    kinds = []
    for groups in found:
        rows = Rows()
        for (minute, owner), values in sorted(groups.items()):
            tally: dict[int, int] = {}
            for value in values:
                key = sketch_key(value)
                tally[key] = tally.get(key, 0) + 1
            keys = sorted(tally)
            rows.minutes.append(_minute(stamps, minute))
            rows.owners.append(owner)
            rows.counts.append(len(values))
            rows.sums.append(sum(values))
            rows.mins.append(min(values))
            rows.maxs.append(max(values))
            rows.keys.append("{" + ",".join(map(str, keys)) + "}")
            rows.key_counts.append("{" + ",".join(str(tally[k]) for k in keys) + "}")
        kinds.append(rows)
    return Deltas(kinds[0], kinds[1])


def compute(
    batches: Sequence[Batch],
    series_ids: Sequence[Sequence[int]],
    metric_of: Mapping[int, int],
    values: Sequence[float],
) -> Deltas:
    """The deltas of a group's batches, given each event's series (`metric_of`: its metric)
    and every event's value in order (the committer reads them once for the raw rows too)."""
    size = sum(len(batch) for batch in batches)
    if size == 0:
        return Deltas(Rows(), Rows())
    if size < SMALL:
        return _small(batches, series_ids, metric_of)
    minutes = _minutes(batches)
    ids = np.concatenate([np.asarray(one, dtype=np.int64) for one in series_ids])
    array = np.asarray(values, dtype=np.float64)
    keys = sketch_keys(array)
    distinct, position = np.unique(ids, return_inverse=True)
    metrics = np.asarray([metric_of[int(s)] for s in distinct], dtype=np.int64)[position]
    stamps: dict[int, datetime] = {}
    return Deltas(
        _rows(minutes, ids, array, keys, stamps),
        _rows(minutes, metrics, array, keys, stamps),
    )


def add_sketches(
    found: Deltas, sketches: tuple[list[Any], ...], metric_of: Mapping[int, int]
) -> None:
    """The delta rows of distribution rows (time, series, count, sum, min, max, keys, counts
    columns), one per point for its series and one for its metric: the compactor merges them
    with the others of their minute."""
    stamps: dict[int, datetime] = {}
    for when, series, count, total, low, high, keys, counts in zip(*sketches, strict=True):
        minute = _minute(stamps, int(when.timestamp() // 60))
        for rows, owner in ((found.series, series), (found.metrics, metric_of[series])):
            rows.minutes.append(minute)
            rows.owners.append(owner)
            rows.counts.append(count)
            rows.sums.append(total)
            rows.mins.append(low)
            rows.maxs.append(high)
            rows.keys.append(keys)
            rows.key_counts.append(counts)
