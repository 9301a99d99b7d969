"""What a group commit writes, as columns: its raw rows (ingest/decimals.py), its deltas
(ingest/deltas.py) and its histogram points' rows (ingest/distributions.py).

Built off the event loop for a large group (ingest/offload.py) by the committer
(ingest/committer.py), which sends them: the raw rows by COPY or within record_group, the
deltas in record_group, the distribution rows in record_distributions.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain, repeat
from typing import Any

from ingest import decimals, deltas
from ingest.validate import Batch

EVENT_COLUMNS = ("time", "series_id", "value", "decimals", "digits", "total")


def prepare(
    batches: list[Batch], series_ids: list[list[int]], metric_of: Mapping[int, int]
) -> tuple[deltas.Deltas, tuple[list[Any], ...], tuple[list[Any], ...]]:
    """A group's deltas, the columns of its raw rows (EVENT_COLUMNS, ingest/decimals.py) and
    those of its distribution rows (record_distributions: histogram points)."""
    sketches: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
    if any(batch.distributions for batch in batches):
        batches, series_ids = _without_distributions(batches, series_ids, sketches)
    values = [event.value for batch in batches for event in batch.events]
    raw = (
        list(chain.from_iterable(batch.times for batch in batches)),
        list(chain.from_iterable(series_ids)),
        *decimals.columns(values),
        list(
            chain.from_iterable(
                batch.totals if batch.totals is not None else repeat(None, len(batch))
                for batch in batches
            )
        ),
    )
    found = deltas.compute(batches, series_ids, metric_of, values)
    if sketches[0]:
        deltas.add_sketches(found, sketches, metric_of)
    return found, raw, sketches


def _without_distributions(
    batches: list[Batch], series_ids: list[list[int]], sketches: tuple[list[Any], ...]
) -> tuple[list[Batch], list[list[int]]]:
    """The batches without their histogram points, whose columns go to `sketches` (time,
    series, count, sum, min, max, keys, counts)."""
    plain: list[Batch] = []
    plain_ids: list[list[int]] = []
    for batch, ids in zip(batches, series_ids, strict=True):
        found = batch.distributions
        if not found:
            plain.append(batch)
            plain_ids.append(ids)
            continue
        received = batch.kept or range(len(batch))
        rest = [n for n, origin in enumerate(received) if origin not in found]
        for n, origin in enumerate(received):
            one = found.get(origin)
            if one is None:
                continue
            keys, counts = one.text()
            for column, value in zip(
                sketches,
                (batch.times[n], ids[n], one.count, one.sum, one.min, one.max, keys, counts),
                strict=True,
            ):
                column.append(value)
        if rest:
            plain.append(
                Batch(
                    [batch.events[n] for n in rest],
                    [batch.times[n] for n in rest],
                    [batch.keys[n] for n in rest],
                    batch.earliest,
                    batch.latest,
                    totals=None if batch.totals is None else [batch.totals[n] for n in rest],
                )
            )
            plain_ids.append([ids[n] for n in rest])
    return plain, plain_ids
