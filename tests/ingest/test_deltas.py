"""The partial aggregates a group commit writes (ingest/deltas.py): the numpy path of large
groups and the plain path of small ones give the same rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ingest import deltas
from ingest.validate import Batch
from ingest.wire import MetricEvent


def batch(rng: random.Random, count: int, now: datetime) -> tuple[Batch, list[int]]:
    times = [now - timedelta(seconds=rng.uniform(0, 300)) for _ in range(count)]
    values = [rng.choice([1, 1, -1, 0]) * 10 ** rng.uniform(-6, 9) for _ in range(count)]
    events = [MetricEvent(metric_name="m", metric_type="gauge", value=v) for v in values]
    return Batch(events, times, [], min(times), max(times)), [rng.randrange(1, 40) for _ in times]


def scrape(count: int, now: datetime) -> tuple[Batch, list[int]]:
    """A value of each of `count` series (and twice the same value of one more): one sketch
    key a row, as scrapes give."""
    events = [MetricEvent(metric_name="m", metric_type="gauge", value=v) for v in range(count)]
    events += [MetricEvent(metric_name="m", metric_type="gauge", value=2.5)] * 2
    return Batch(events, [now] * len(events), [], now, now), [*range(1, count + 1), 39, 39]


@pytest.mark.parametrize("count", [1, 7, 300])
@pytest.mark.parametrize("shape", ["random", "scrape"])
def test_both_paths_give_the_same_rows(
    count: int, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(count)
    now = datetime.now(UTC)
    if shape == "scrape":
        groups = [scrape(min(count, 38), now)]
    else:
        groups = [batch(rng, count, now), batch(rng, count // 2 + 1, now)]
    batches, ids = [b for b, _ in groups], [i for _, i in groups]
    metric_of = {s: 1 + s % 3 for s in range(1, 40)}
    values = [event.value for b in batches for event in b.events]

    monkeypatch.setattr(deltas, "SMALL", 10**9)
    plain = deltas.compute(batches, ids, metric_of, values)
    monkeypatch.setattr(deltas, "SMALL", 0)
    vectorised = deltas.compute(batches, ids, metric_of, values)

    for mine, theirs in ((plain.series, vectorised.series), (plain.metrics, vectorised.metrics)):
        assert mine.minutes == theirs.minutes and mine.owners == theirs.owners
        assert mine.counts == theirs.counts
        assert mine.mins == theirs.mins and mine.maxs == theirs.maxs
        assert mine.sums == pytest.approx(theirs.sums, rel=1e-12)
        assert mine.keys == [k.replace(" ", "") for k in theirs.keys]
        assert mine.key_counts == [c.replace(" ", "") for c in theirs.key_counts]
    assert sum(plain.series.counts) == sum(plain.metrics.counts) == sum(len(b) for b in batches)
